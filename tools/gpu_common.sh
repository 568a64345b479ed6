# Sourced by the GPU-machine scripts (tools/gpu_issue9.sh, ...): run from the repo root with
# .carry/ as tools/gpu_issue8.sh describes (debs, shared/, make_checkpoint.py, tokenizers/llama3).
#   gpu_setup        build into build-gpu (the build half of tools/gpu_run.sh) or, when
#                    build-gpu/cllm exists (a warm machine) and REBUILD != 1, rebuild incrementally;
#                    then export LD_LIBRARY_PATH for cllm's programs and print the card
#   mk PRESET DIR L  a random-weight checkpoint of PRESET with L layers (make_checkpoint.py
#                    writes one layer; --load-format dummy draws the rest), once
#   el               "[N s]" since the script started
# Env: OUT (logs; default /tmp/cllm_gpu_out).
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
GPU_T0=$(date +%s)
el() { echo "[$(( $(date +%s) - GPU_T0 )) s]"; }
gpu_setup() {
  local libd=/opt/deps/usr/lib/x86_64-linux-gnu
  if [ ! -x build-gpu/cllm ] || [ "${REBUILD:-0}" = 1 ]; then
    sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only.sh  # inside the repo: it cds to its parent
    CLLM_SHARED_DIR=$PWD/.carry/shared CLLM_DEBS=$PWD/.carry/debs OUT=$OUT/build bash tools/.build_only.sh \
      > "$OUT/build.log" 2>&1
    echo "build rc=$? $(el)"; grep -E " error|Error [0-9]" "$OUT/build.log" | head
  else
    mkdir -p /opt/deps && for f in .carry/debs/*.deb; do dpkg -x "$f" /opt/deps; done
    (cd build-gpu && cmake --build . -j16 > "$OUT/build.log" 2>&1); echo "incremental build rc=$? $(el)"
  fi
  export LD_LIBRARY_PATH="$libd:$libd/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}
mk() {
  [ -f "$2/config.json" ] && return
  python3 .carry/make_checkpoint.py --preset "$1" --out "$2" --tokenizer .carry/tokenizers/llama3 --layers 1 \
    > "$OUT/mk_$1.log" 2>&1 || { echo "make_checkpoint $1 failed"; tail -3 "$OUT/mk_$1.log"; }
  python3 -c 'import json,sys; p = sys.argv[1] + "/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = int(sys.argv[2]); json.dump(c, open(p, "w"), indent=2)' "$2" "$3"
}

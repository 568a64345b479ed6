#!/usr/bin/env bash
# Issue 8 on the GPU machine: the engine restructured into workers + executor
# must run at tensor_parallel_size 1 with no loss against the previous main.
#   bash tools/gpu_issue8.sh build   build this tree (build-gpu/) and the baseline (the commit packed in
#                                    .carry/base.tar.gz, into build-base/) in parallel, run the GPU tests of
#                                    this tree, NCCL smoke checks (bench comm, one-GPU -tp 2 error)
#   bash tools/gpu_issue8.sh bench   the same benchmarks on both builds, interleaved (old, new, old, new):
#                                    bench latency bs1 ctx128, the decode sweep, bench throughput
# Needs .carry/ (ignored by git; name it in the device tool's `carry`), made on the development machine:
#   mkdir -p .carry/debs && (cd .carry/debs && apt-get download <the packages of shared/device/README.md>
#       libuv1 libuv1-dev node-llhttp)       # the HTTP layer is libuv + llhttp now (no libmicrohttpd)
#   git archive --format=tar.gz -o .carry/base.tar.gz BASE_COMMIT CMakeLists.txt src include bench tools
#   cp ../shared/device/make_checkpoint.py .carry/; cp -r ../shared/tokenizers/llama3 .carry/tokenizers/
#   cp -r ../shared/models ../shared/golden .carry/shared/
# (about 40 MB with the tree: under the tool's 64 MiB).
# CLLM_BENCH_PARTS picks the benchmarks of `bench` (default "lat sweep tput"); CLLM_TOTAL_S bounds its time.
# Logs and JSON under $OUT; a summary table last.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
MODE=${1:-build}
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
t0=$(date +%s)
export NCCL_NVLS_ENABLE=0

if [ "$MODE" = build ]; then
  rm -rf build-base-src && mkdir -p build-base-src && tar -xzf .carry/base.tar.gz -C build-base-src
  sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only_new.sh  # inside the repo: it cds to its parent
  sed -n '1,/^t_build=/p' build-base-src/tools/gpu_run.sh | sed 's/^BUILD=build-gpu/BUILD=build-base/' > build-base-src/tools/build_only.sh
  export CLLM_SHARED_DIR=$ROOT/.carry/shared CLLM_DEBS=$ROOT/.carry/debs
  (OUT=$OUT/new bash tools/.build_only_new.sh > "$OUT/build_new.log" 2>&1; echo "new build rc=$?" >> "$OUT/build_new.log") &
  if [ -z "${CLLM_NO_BASE:-}" ]; then  # CLLM_NO_BASE=1: this tree only (short device time)
    (cd build-base-src && OUT=$OUT/base bash tools/build_only.sh > "$OUT/build_base.log" 2>&1; echo "base build rc=$?" >> "$OUT/build_base.log") &
  else
    echo "base build skipped (CLLM_NO_BASE)" > "$OUT/build_base.log"
  fi
  wait
  tail -2 "$OUT/build_new.log" "$OUT/build_base.log"
  grep -E " error|Error [0-9]" "$OUT/build_new.log" | head -20
  ln -sfn "$ROOT/build-base-src/build-base" build-base
  export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "== GPU tests (this tree) =="
  (cd build-gpu && ctest -L gpu --output-on-failure --timeout 240) > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?"; grep -E "tests passed|tests failed|\*\*\*Failed|Failed  " "$OUT/gpu_tests.log" | head -20
  echo "== NCCL smoke =="
  build-gpu/cllm bench comm --device cuda --world-size 1 --op all --max-bytes 64M --check 2>&1 | tail -30 | tee "$OUT/bench_comm_cuda1.log"
  build-gpu/cllm generate --model models/stories260K --device cuda --prompt "Once upon a time" --max-tokens 8 -tp 2 2>&1 | tail -2
  echo "(want: a clear error, one GPU cannot hold two ranks)"
  build-gpu/cllm generate --model models/stories260K --device cuda --prompt "Once upon a time" --max-tokens 24 --temperature 0 2>&1 | tail -3
  echo "total $(( $(date +%s) - t0 )) s"
  exit 0
fi

# ---- bench ----
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
M=/tmp/l8
if [ ! -f $M/config.json ]; then
  python3 .carry/make_checkpoint.py --preset llama3-8b --out $M --tokenizer .carry/tokenizers/llama3 --layers 1 > "$OUT/mk.log" 2>&1 || { echo "make_checkpoint failed"; tail -5 "$OUT/mk.log"; }
  python3 -c 'import json; p = "/tmp/l8/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = 32; json.dump(c, open(p, "w"), indent=2)'
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/env.log"
lat() { # build label
  timeout 120 $1/cllm bench latency --model $M --load-format dummy --device cuda --input-len 128 --output-len 256 \
    --num-iters 5 --num-iters-warmup 1 --output-json "$OUT/lat_$2.json" > "$OUT/lat_$2.log" 2>&1
  grep -E "decode \(tokens/s\)|prefill \(TFLOP/s\)" "$OUT/lat_$2.log" | sed "s/^/$2: /"
}
PARTS=${CLLM_BENCH_PARTS:-lat sweep tput}   # which benchmarks to run
case " $PARTS " in *" lat "*) for r in 1 2; do lat build-base base$r; lat build-gpu new$r; done;; esac
sweep() {
  timeout 150 $1/cllm bench latency --model $M --load-format dummy --device cuda --batch-size 1,8,64,256 \
    --input-len 1024 --output-len 128 --num-iters 2 --num-iters-warmup 1 --output-json "$OUT/sweep_$2.json" > "$OUT/sweep_$2.log" 2>&1
  grep -E "^ +[0-9]+ " "$OUT/sweep_$2.log" | sed "s/^/$2: /"
}
case " $PARTS " in *" sweep "*) sweep build-base base; sweep build-gpu new;; esac
tput() {
  timeout 200 $1/cllm bench throughput --model $M --load-format dummy --device cuda --num-prompts ${CLLM_TP_PROMPTS:-500} \
    --input-len 1000 --output-len 1000 --max-model-len 2048 --output-json "$OUT/tput_$2.json" > "$OUT/tput_$2.log" 2>&1
  grep -E "^Throughput" "$OUT/tput_$2.log" | sed "s/^/$2: /"
}
case " $PARTS " in *" tput "*)
left=$(( ${CLLM_TOTAL_S:-560} - ($(date +%s) - t0) ))
[ $left -gt 200 ] && tput build-base base
left=$(( ${CLLM_TOTAL_S:-560} - ($(date +%s) - t0) ))
[ $left -gt 150 ] && tput build-gpu new;;
esac
echo "total $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# One device call that checks and measures the two CUDA paths written after the last GPU run
# (2026-12-06) and off by default until this has run:
#   - the fused attention prologue (src/backend/cuda/rope_kv_write.cu, CLLM_FUSED_ROPE_KV_WRITE=1);
#   - the expert-major GEMV MoE path (moe.cu path (c), CLLM_CUDA_MOE_XGEMV; AUTO does not pick it).
# Steps: build (the build half of tools/gpu_run.sh), every GPU test with the fused prologue off and
# then on (its kernel cases are in test_cuda_elementwise, the engine and golden tests run through it
# when it is on), `bench moe` at decode sizes (xgemv_us against grouped grp_us and auto_us), and bs1
# decode A/B (fused prologue off / on, interleaved) on Llama-3.1-8B and Qwen3-30B-A3B architectures
# with --load-format dummy. If the tests pass and a path wins, make it the default (cuda_backend.cu:
# the getenv; moe.cu: cllm_cuda_moe_path) and record the figures in README.
# Needs .carry/ as tools/gpu_issue8.sh describes. Env: OUT (logs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
t0=$(date +%s)
sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only_new.sh  # inside the repo: it cds to its parent
CLLM_SHARED_DIR=$ROOT/.carry/shared CLLM_DEBS=$ROOT/.carry/debs OUT=$OUT/build bash tools/.build_only_new.sh \
  > "$OUT/build.log" 2>&1
echo "build rc=$? ($(( $(date +%s) - t0 )) s)"; grep -E " error|Error [0-9]" "$OUT/build.log" | head
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for f in 0 1; do
  (cd build-gpu && CLLM_FUSED_ROPE_KV_WRITE=$f ctest -L gpu --output-on-failure --timeout 240) \
    > "$OUT/gpu_tests_fused$f.log" 2>&1
  echo "gpu tests, CLLM_FUSED_ROPE_KV_WRITE=$f: rc=$?"
  grep -E "tests passed|tests failed|\*\*\*Failed" "$OUT/gpu_tests_fused$f.log" | head
done
grep -E "^FAIL.*(qk_norm_rope|xgemv)" build-gpu/Testing/Temporary/LastTest.log | head
echo "== bench moe, decode sizes (Qwen3-30B-A3B layer) =="
timeout 120 build-gpu/cllm bench moe --device cuda --num-tokens 1,8,16,32,64,128,256,512 > "$OUT/bench_moe.log" 2>&1
echo "rc=$?"; grep -vE "grouped split" "$OUT/bench_moe.log" | tail -11
mk() { # preset dir layers
  [ -f "$2/config.json" ] && return
  python3 .carry/make_checkpoint.py --preset "$1" --out "$2" --tokenizer .carry/tokenizers/llama3 --layers 1 \
    > "$OUT/mk_$1.log" 2>&1 || { echo "make_checkpoint $1 failed"; tail -3 "$OUT/mk_$1.log"; }
  python3 -c 'import json,sys; p = sys.argv[1] + "/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = int(sys.argv[2]); json.dump(c, open(p, "w"), indent=2)' "$2" "$3"
}
mk llama3-8b /tmp/l8 32
mk qwen3-30b-a3b /tmp/q30 48
for m in /tmp/l8 /tmp/q30; do
  for f in 0 1 0 1; do
    CLLM_FUSED_ROPE_KV_WRITE=$f timeout 120 build-gpu/cllm bench latency --model $m --load-format dummy --device cuda \
      --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat.log" 2>&1
    echo "$(basename $m) fused=$f: $(grep -E 'decode \(tokens/s\)' "$OUT/lat.log" | head -1)"
  done
done
echo "total $(( $(date +%s) - t0 )) s"

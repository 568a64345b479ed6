#!/usr/bin/env bash
# One device call that checks and measures the CUDA paths written without a GPU
# (2026-12-06): the tensor-core prefill attention kernel and the fp8 KV cache on
# CUDA (attention.cu, kv_write.cu, rope_kv_write.cu), the fused attention prologue
# (rope_kv_write.cu, CLLM_FUSED_ROPE_KV_WRITE=1) and the expert-major GEMV MoE path
# (moe.cu path (c), CLLM_CUDA_MOE_PATH=xgemv).
# Steps: build (the build half of tools/gpu_run.sh); the kernel tests most likely to
# fail first, then every GPU test (fused prologue on); bench latency A/B on
# Llama-3.1-8B (prefill 2048: CLLM_CUDA_ATTN_PREFILL=fma vs the tensor-core default;
# bs1 decode: fused prologue off / on; --kv-cache-dtype fp8); `bench moe` at decode
# sizes (xgemv_us against grp_us / auto_us); Qwen3-30B-A3B bs1 (fused off / on,
# xgemv). Needs .carry/ as tools/gpu_issue8.sh describes. Env: OUT (logs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s]"; }
sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only_new.sh  # inside the repo: it cds to its parent
CLLM_SHARED_DIR=$ROOT/.carry/shared CLLM_DEBS=$ROOT/.carry/debs OUT=$OUT/build bash tools/.build_only_new.sh \
  > "$OUT/build.log" 2>&1
echo "build rc=$? $(el)"; grep -E " error|Error [0-9]" "$OUT/build.log" | head
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mk() { # preset dir layers
  [ -f "$2/config.json" ] && return
  python3 .carry/make_checkpoint.py --preset "$1" --out "$2" --tokenizer .carry/tokenizers/llama3 --layers 1 \
    > "$OUT/mk_$1.log" 2>&1 || { echo "make_checkpoint $1 failed"; tail -3 "$OUT/mk_$1.log"; }
  python3 -c 'import json,sys; p = sys.argv[1] + "/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = int(sys.argv[2]); json.dump(c, open(p, "w"), indent=2)' "$2" "$3"
}
(mk llama3-8b /tmp/l8 32; mk qwen3-30b-a3b /tmp/q30 48) &
mkpid=$!
for t in test_cuda_attention test_cuda_elementwise; do
  timeout 300 build-gpu/tests/kernels/$t > "$OUT/$t.log" 2>&1
  echo "$t rc=$? $(el): $(grep -c '^PASS' "$OUT/$t.log") PASS, $(grep -c '^FAIL' "$OUT/$t.log") FAIL"
  grep -E "^FAIL" "$OUT/$t.log" | head -12
  tail -1 "$OUT/$t.log"
done
(cd build-gpu && CLLM_FUSED_ROPE_KV_WRITE=1 ctest -L gpu --output-on-failure --timeout 300 \
   -E "test_cuda_attention|test_cuda_elementwise") > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests (fused prologue on): rc=$? $(el)"
grep -E "tests passed|tests failed|\*\*\*Failed|Failed  " "$OUT/gpu_tests.log" | head -12
grep -E "^FAIL|max rel err.*FAIL" "$OUT/gpu_tests.log" | head -8
grep -E "cuda_kv_fp8.*(ok|FAIL)" "$OUT/gpu_tests.log" | head -4
wait $mkpid
lat() { # tag env... -- args
  local tag=$1; shift
  env "$@" timeout 150 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda \
    --num-iters 5 --num-iters-warmup 1 $LARGS > "$OUT/lat.log" 2>&1
  echo "$tag: $(grep -E "$LGREP" "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 -E 'error' "$OUT/lat.log")"
}
LARGS="--input-len 2048 --output-len 2 --max-num-batched-tokens 4096"; LGREP='prefill \(TFLOP/s\)'
for a in fma mma fma mma; do lat "l8 prefill2048 attn=$a" CLLM_CUDA_ATTN_PREFILL=$a; done
LARGS="--input-len 2048 --output-len 2 --max-num-batched-tokens 4096 --kv-cache-dtype fp8"
lat "l8 prefill2048 kv=fp8" X=1
LARGS="--input-len 128 --output-len 256"; LGREP='decode \(tokens/s\)'
for f in 0 1 0 1; do lat "l8 bs1 ctx128 fused=$f" CLLM_FUSED_ROPE_KV_WRITE=$f; done
LARGS="--input-len 128 --output-len 256 --kv-cache-dtype fp8"; lat "l8 bs1 ctx128 fused=1 kv=fp8" CLLM_FUSED_ROPE_KV_WRITE=1
echo "== bench moe, decode sizes (Qwen3-30B-A3B layer) $(el)"
timeout 120 build-gpu/cllm bench moe --device cuda --num-tokens 1,8,16,32,64,128,256,512 > "$OUT/bench_moe.log" 2>&1
echo "rc=$?"; grep -vE "grouped split" "$OUT/bench_moe.log" | tail -11
for c in "0 auto" "1 auto" "1 xgemv" "0 auto" "1 auto"; do
  set -- $c
  CLLM_FUSED_ROPE_KV_WRITE=$1 CLLM_CUDA_MOE_PATH=$2 timeout 150 build-gpu/cllm bench latency --model /tmp/q30 \
    --load-format dummy --device cuda --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 \
    > "$OUT/lat.log" 2>&1
  echo "q30 bs1 fused=$1 moe=$2: $(grep -E 'decode \(tokens/s\)' "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 error "$OUT/lat.log")"
done
echo "total $(el)"

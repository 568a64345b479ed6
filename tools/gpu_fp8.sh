#!/usr/bin/env bash
# One device call that checks and measures the FP8-weight path (issue 9: FP8 weights in GPU memory,
# src/backend/cuda/linear_fp8.cu, quantize_fp8.cu, src/model/layers/loader_fp8.c), never run on a GPU
# before this script:
#   1. build (the build half of tools/gpu_run.sh, into build-gpu);
#   2. test_cuda_linear_fp8 (the CUDA FP8 linear against its CPU reference: the quantize kernel bit for
#      bit, T = 1..2048, Llama-3.1-8B shapes, every path, graph capture); its log says which path each
#      case took ("took=lt-outer" means cuBLASLt's outer-vector scales were accepted on this card);
#   3. the FP8 end-to-end GPU tests (model_fp8.cuda: the FP8 fixture kept in FP8 vs its dequantized copy;
#      e2e.quantization_fp8.cuda.*: --quantization fp8 vs bf16, max rel error and top-1 agreement), then
#      every GPU test (no regression);
#   4. bench_cuda_kernels' FP8 section (TFLOP/s vs the FP8 dense spec, GB/s of the GEMV sizes; the
#      GEMV vs cuBLASLt rows at 4/8/16 tokens say where the AUTO threshold, 8, should be);
#   5. bench latency bs 1 and a decode sweep, bf16 vs --quantization fp8, and bench throughput, on the
#      Llama-3.1-8B architecture with --load-format dummy.
# Needs .carry/ as tools/gpu_issue8.sh describes. Env: OUT (logs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
t0=$(date +%s)
sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only_fp8.sh  # inside the repo: it cds to its parent
CLLM_SHARED_DIR=$ROOT/.carry/shared CLLM_DEBS=$ROOT/.carry/debs OUT=$OUT/build bash tools/.build_only_fp8.sh \
  > "$OUT/build.log" 2>&1
echo "build rc=$? ($(( $(date +%s) - t0 )) s)"; grep -E " error|Error [0-9]" "$OUT/build.log" | head
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "== test_cuda_linear_fp8 =="
timeout 400 build-gpu/tests/kernels/test_cuda_linear_fp8 > "$OUT/test_cuda_linear_fp8.log" 2>&1
echo "rc=$?"; grep -E "^FAIL|cases,|took=lt-outer" "$OUT/test_cuda_linear_fp8.log" | head -5
grep -cE "took=lt-outer" "$OUT/test_cuda_linear_fp8.log"; grep -cE "took=lt-epilogue" "$OUT/test_cuda_linear_fp8.log"
grep -E "refused" "$OUT/test_cuda_linear_fp8.log" | head -3
echo "== FP8 end-to-end GPU tests =="
(cd build-gpu && ctest -L gpu -R "fp8" --output-on-failure --timeout 300 -V) > "$OUT/gpu_fp8_e2e.log" 2>&1
echo "rc=$?"; grep -E "top-1 agreement over|max rel err|tests passed|tests failed" "$OUT/gpu_fp8_e2e.log" | head -30
echo "== every GPU test =="
(cd build-gpu && ctest -L gpu --output-on-failure --timeout 400) > "$OUT/gpu_tests.log" 2>&1
echo "rc=$?"; grep -E "tests passed|tests failed|\*\*\*Failed" "$OUT/gpu_tests.log" | head
echo "== bench_cuda_kernels fp8 =="
timeout 300 build-gpu/bench_cuda_kernels "$OUT/bench_fp8.json" fp8 > "$OUT/bench_fp8.log" 2>&1
echo "rc=$?"; cat "$OUT/bench_fp8.log"
mk() { # preset dir layers
  [ -f "$2/config.json" ] && return
  python3 .carry/make_checkpoint.py --preset "$1" --out "$2" --tokenizer .carry/tokenizers/llama3 --layers 1 \
    > "$OUT/mk_$1.log" 2>&1 || { echo "make_checkpoint $1 failed"; tail -3 "$OUT/mk_$1.log"; }
  python3 -c 'import json,sys; p = sys.argv[1] + "/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = int(sys.argv[2]); json.dump(c, open(p, "w"), indent=2)' "$2" "$3"
}
mk llama3-8b /tmp/l8 32
echo "== bench latency bs1 (input 128, output 256), bf16 / fp8 interleaved =="
for q in none fp8 none fp8; do
  timeout 180 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda --quantization $q \
    --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat_$q.log" 2>&1
  echo "$q: $(grep -E 'decode \(tokens/s\)' "$OUT/lat_$q.log" | head -1)"
  echo "$q: $(grep -E 'prefill \(TFLOP/s\)' "$OUT/lat_$q.log" | head -1)"
done
echo "== decode sweep (input 1024, output 128) =="
for q in none fp8; do
  timeout 300 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda --quantization $q \
    --batch-size 1,8,64,256 --input-len 1024 --output-len 128 > "$OUT/sweep_$q.log" 2>&1
  echo "$q: rc=$?"; tail -5 "$OUT/sweep_$q.log"
done
echo "== bench throughput 200 x (1000 in / 1000 out) =="
for q in none fp8; do
  timeout 400 build-gpu/cllm bench throughput --model /tmp/l8 --load-format dummy --device cuda --quantization $q \
    --num-prompts 200 --input-len 1000 --output-len 1000 > "$OUT/tput_$q.log" 2>&1
  echo "$q: rc=$? $(grep -E '^Throughput' "$OUT/tput_$q.log")"
done
echo "total $(( $(date +%s) - t0 )) s"

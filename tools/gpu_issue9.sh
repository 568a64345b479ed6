#!/usr/bin/env bash
# Issue #9 measurements in device calls (H100/H200; needs .carry/ as tools/gpu_issue8.sh
# describes). Usage: bash tools/gpu_issue9.sh test|kernels|tput|tput-ab|moe ...  (steps run
# in the order given; the build is reused when build-gpu/cllm exists, as on a warm machine).
#   test     every GPU test (kernel tests first, their FAIL lines printed)
#   kernels  bench_cuda_kernels: the attention rows (decode bf16 / fp8, prefill)
#   adapt    bs1 decode with the adaptive decode split off / on (CLLM_CUDA_ATTN_ADAPTIVE_SPLIT)
#   attn     test_cuda_attention and the fp8 KV golden tests only
#   tput-q   bench throughput 500 x (1000 / 1000) with --quantization fp8 --kv-cache-dtype fp8
#   fp8      FP8 weights: test_cuda_linear_fp8's paths, the FP8 e2e figures, bench_cuda_kernels fp8,
#            bs1 decode --quantization none / fp8 interleaved (run after `test`)
#   tput     bench throughput 500 x (1000 in / 1000 out), bf16 KV;  tput-fp8: the same with --kv-cache-dtype fp8
#   tput-ab  the same bf16 run with the CUDA-core prefill kernel (CLLM_CUDA_ATTN_PREFILL=fma), interleaved
#   moe      Qwen3-30B-A3B: batched decode sweep and bench throughput 200 x (1000 / 1000)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s]"; }
if [ ! -x build-gpu/cllm ] || [ "${REBUILD:-0}" = 1 ]; then
  sed -n '1,/^t_build=/p' tools/gpu_run.sh > tools/.build_only_9.sh  # inside the repo: it cds to its parent
  CLLM_SHARED_DIR=$ROOT/.carry/shared CLLM_DEBS=$ROOT/.carry/debs OUT=$OUT/build bash tools/.build_only_9.sh \
    > "$OUT/build.log" 2>&1
  echo "build rc=$? $(el)"; grep -E " error|Error [0-9]" "$OUT/build.log" | head
else
  mkdir -p /opt/deps && for f in .carry/debs/*.deb; do dpkg -x "$f" /opt/deps; done
  (cd build-gpu && cmake --build . -j16 > "$OUT/build.log" 2>&1); echo "incremental build rc=$? $(el)"
fi
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
tput() { # tag model env... (args in TARGS)
  local tag=$1 m=$2; shift 2
  env "$@" timeout 400 build-gpu/cllm bench throughput --model $m --load-format dummy --device cuda $TARGS \
    > "$OUT/tput.log" 2>&1
  echo "$tag: rc=$? $(grep -iE 'output tokens/s|throughput' "$OUT/tput.log" | head -2 | tr -s ' ' | tr '\n' ' ') $(grep -m1 -iE 'error' "$OUT/tput.log") $(el)"
}
for step in "$@"; do
  case $step in
  adapt)  # adaptive decode split (CLLM_CUDA_ATTN_ADAPTIVE_SPLIT), bs1 decode A/B, Llama-8B ctx 128 and 2048
    wait $mkpid
    for c in "0 128" "1 128" "0 128" "1 128" "0 2048" "1 2048"; do
      set -- $c
      CLLM_CUDA_ATTN_ADAPTIVE_SPLIT=$1 timeout 150 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy \
        --device cuda --input-len $2 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat.log" 2>&1
      echo "l8 bs1 ctx$2 adaptive=$1: $(grep -E 'decode \(tokens/s\)' "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 error "$OUT/lat.log")"
    done ;;
  attn)
    timeout 300 build-gpu/tests/kernels/test_cuda_attention > "$OUT/test_cuda_attention.log" 2>&1
    echo "test_cuda_attention rc=$? $(el): $(grep -c '^PASS' "$OUT/test_cuda_attention.log") PASS, $(grep -c '^FAIL' "$OUT/test_cuda_attention.log") FAIL"
    grep -E "^FAIL" "$OUT/test_cuda_attention.log" | head -12
    (cd build-gpu && ctest -R "kv_fp8" --output-on-failure --timeout 300) > "$OUT/kvfp8.log" 2>&1
    echo "kv fp8 golden tests rc=$?"; grep -E "tests passed|tests failed|Failed" "$OUT/kvfp8.log" | head -5 ;;
  tput-q)
    wait $mkpid
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048 --kv-cache-dtype fp8 --quantization fp8"
    tput "l8 tput quantization=fp8 kv=fp8" /tmp/l8 X=1 ;;
  test)
    for t in test_cuda_attention test_cuda_moe test_cuda_elementwise test_cuda_linear_fp8; do
      timeout 300 build-gpu/tests/kernels/$t > "$OUT/$t.log" 2>&1
      echo "$t rc=$? $(el): $(grep -c '^PASS' "$OUT/$t.log") PASS, $(grep -c '^FAIL' "$OUT/$t.log") FAIL"
      grep -E "^FAIL" "$OUT/$t.log" | head -12
    done
    (cd build-gpu && ctest -L gpu --output-on-failure --timeout 300 \
       -E "test_cuda_attention|test_cuda_elementwise|test_cuda_moe|test_cuda_linear_fp8" -V) > "$OUT/gpu_tests.log" 2>&1
    echo "gpu tests: rc=$? $(el)"
    grep -E "tests passed|tests failed|\*\*\*Failed|Failed  " "$OUT/gpu_tests.log" | head -12
    grep -E "(^|: )FAIL" "$OUT/gpu_tests.log" | head -10 ;;
  kernels)
    timeout 200 build-gpu/bench_cuda_kernels "$OUT/bench_kernels.json" attention > "$OUT/bench_kernels.log" 2>&1
    echo "bench_cuda_kernels rc=$? $(el)"; grep -E "card:|_attention" "$OUT/bench_kernels.log" | grep -v " t[0-9]" | tr -s ' '
    ;;
  tput)
    wait $mkpid
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048"
    tput "l8 tput bf16" /tmp/l8 X=1 ;;
  tput-fp8)
    wait $mkpid
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048 --kv-cache-dtype fp8"
    tput "l8 tput kv=fp8" /tmp/l8 X=1
    tput "l8 tput kv=fp8 quantization=fp8" /tmp/l8 X=1 --quantization fp8 ;;
  fp8)
    grep -E "^FAIL|cases,|refused" "$OUT/test_cuda_linear_fp8.log" 2>/dev/null | head -8
    echo "took=lt-outer $(grep -c 'took=lt-outer' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null) lt-epilogue $(grep -c 'took=lt-epilogue' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null) gemv $(grep -c 'took=gemv' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null)"
    grep -hE "top-1 agreement over|quantization_fp8|model_fp8" "$OUT/gpu_tests.log" 2>/dev/null | head -12
    timeout 200 build-gpu/bench_cuda_kernels "$OUT/bench_fp8.json" fp8 > "$OUT/bench_fp8.log" 2>&1
    echo "bench fp8 rc=$? $(el)"; grep -vE "^kernel" "$OUT/bench_fp8.log" | tr -s ' ' | head -40
    wait $mkpid
    for q in none fp8 none fp8; do
      timeout 180 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda --quantization $q \
        --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat_$q.log" 2>&1
      echo "l8 bs1 quantization=$q: $(grep -E 'decode \(tokens/s\)' "$OUT/lat_$q.log" | head -1 | tr -s ' ') | $(grep -E 'prefill \(TFLOP/s\)' "$OUT/lat_$q.log" | head -1 | tr -s ' ') $(grep -m1 -i error "$OUT/lat_$q.log")"
    done ;;
  tput-ab)
    wait $mkpid
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048"
    for a in fma mma; do tput "l8 tput bf16 attn=$a" /tmp/l8 CLLM_CUDA_ATTN_PREFILL=$a; done ;;
  moe)
    wait $mkpid
    timeout 300 build-gpu/cllm bench latency --model /tmp/q30 --load-format dummy --device cuda --input-len 1024 \
      --output-len 64 --batch-size 1,8,16,32,64 --num-iters 3 --max-model-len 1088 > "$OUT/q30_sweep.log" 2>&1
    echo "q30 sweep rc=$? $(el)"; tail -8 "$OUT/q30_sweep.log"
    TARGS="--num-prompts 200 --input-len 1000 --output-len 1000 --max-model-len 2048"
    tput "q30 tput 200 prompts" /tmp/q30 X=1 ;;
  esac
done
echo "total $(el)"

#!/usr/bin/env bash
# Issue #9 / #10 measurements in device calls (H100/H200; needs .carry/ as tools/gpu_issue8.sh
# describes). Usage: bash tools/gpu_issue9.sh STEP ...  (steps run in the order given; the build
# is reused when build-gpu/cllm exists, as on a warm machine; see tools/gpu_common.sh).
#   test     every GPU test (kernel tests first, their FAIL lines printed)
#   prefill  prefill 2048 tokens, Llama-3.1-8B: the CUDA-core prefill attention kernel
#            (CLLM_CUDA_ATTN_PREFILL=fma) against the tensor-core one, interleaved; fp8 KV; bs1
#            decode with the fused attention prologue off / on (CLLM_FUSED_ROPE_KV_WRITE)
#   q30      Qwen3-30B-A3B bs1 decode: fused prologue off / on, MoE path pinned to xgemv;
#            `bench moe` at decode sizes (token-major / expert-major GEMV / grouped)
#   kernels  bench_cuda_kernels: the attention rows (decode bf16 / fp8, prefill)
#   adapt    bs1 decode with the adaptive decode split off / on (CLLM_CUDA_ATTN_ADAPTIVE_SPLIT)
#   attn     test_cuda_attention and the fp8 KV golden tests only
#   tput-q   bench throughput 500 x (1000 / 1000) with --quantization fp8 --kv-cache-dtype fp8
#   fp8      FP8 weights: test_cuda_linear_fp8's paths, the FP8 e2e figures, bench_cuda_kernels fp8,
#            bs1 decode --quantization none / fp8 interleaved (run after `test`)
#   tput     bench throughput 500 x (1000 in / 1000 out), bf16 KV;  tput-fp8: the same with --kv-cache-dtype fp8
#   tput-ab  the same bf16 run with the CUDA-core prefill kernel (CLLM_CUDA_ATTN_PREFILL=fma), interleaved
#   moe      Qwen3-30B-A3B: batched decode sweep and bench throughput 200 x (1000 / 1000)
#   q30-tput Qwen3-30B-A3B: bench throughput 1000 x (1000 / 1000) (#10's figure; ~61 GB of weights: on
#            an 80 GB card the KV cache holds few sequences, so it is slow)
#   decode   Llama-8B batched decode at context 1024, batch 1 / 8 / 64 / 256 (#9: >= 85 % of the roofline)
#   serve    Llama-8B `cllm serve` + `cllm bench serve` 1000 prompts at concurrency 128, 512 in / 128 out
#            (#9: >= 9,000 output tokens/s, median TPOT)
#   next     what the last session left for the next call: test adapt decode serve (then tput-q / q30-tput
#            in a second call)
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2; }
. tools/gpu_common.sh
gpu_setup
(mk llama3-8b /tmp/l8 32; mk qwen3-30b-a3b /tmp/q30 48) &
mkpid=$!
tput() { # tag model env... (args in TARGS)
  local tag=$1 m=$2; shift 2
  env "$@" timeout 400 build-gpu/cllm bench throughput --model $m --load-format dummy --device cuda $TARGS \
    > "$OUT/tput.log" 2>&1
  echo "$tag: rc=$? $(grep -iE 'output tokens/s|throughput' "$OUT/tput.log" | head -2 | tr -s ' ' | tr '\n' ' ') $(grep -m1 -iE 'error' "$OUT/tput.log") $(el)"
}
steps=()
for step in "$@"; do
  if [ "$step" = next ]; then steps+=(test adapt decode serve); else steps+=("$step"); fi
done
for step in "${steps[@]}"; do
  case $step in
  adapt)  # adaptive decode split (CLLM_CUDA_ATTN_ADAPTIVE_SPLIT), bs1 decode A/B, Llama-8B ctx 128 and 2048
    wait $mkpid 2>/dev/null
    for c in "0 128" "1 128" "0 128" "1 128" "0 2048" "1 2048"; do
      set -- $c
      CLLM_CUDA_ATTN_ADAPTIVE_SPLIT=$1 timeout 150 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy \
        --device cuda --input-len $2 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat.log" 2>&1
      echo "l8 bs1 ctx$2 adaptive=$1: $(grep -E 'decode \(tokens/s\)' "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 error "$OUT/lat.log")"
    done ;;
  prefill)
    wait $mkpid 2>/dev/null
    lat() { # tag env... (args in LARGS, the figure grepped by LGREP)
      local tag=$1; shift
      env "$@" timeout 150 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda \
        --num-iters 5 --num-iters-warmup 1 $LARGS > "$OUT/lat.log" 2>&1
      echo "$tag: $(grep -E "$LGREP" "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 -E 'error' "$OUT/lat.log")"
    }
    LARGS="--input-len 2048 --output-len 2 --max-num-batched-tokens 4096"; LGREP='prefill \(TFLOP/s\)'
    for a in fma mma fma mma; do lat "l8 prefill2048 attn=$a" CLLM_CUDA_ATTN_PREFILL=$a; done
    LARGS="$LARGS --kv-cache-dtype fp8"; lat "l8 prefill2048 kv=fp8" X=1
    LARGS="--input-len 128 --output-len 256"; LGREP='decode \(tokens/s\)'
    for f in 0 1 0 1; do lat "l8 bs1 ctx128 fused=$f" CLLM_FUSED_ROPE_KV_WRITE=$f; done
    LARGS="$LARGS --kv-cache-dtype fp8"; lat "l8 bs1 ctx128 kv=fp8" X=1 ;;
  q30)
    timeout 120 build-gpu/cllm bench moe --device cuda --num-tokens 1,8,16,32,64,128,256,512 > "$OUT/bench_moe.log" 2>&1
    echo "bench moe rc=$? $(el)"; grep -vE "grouped split" "$OUT/bench_moe.log" | tail -11
    wait $mkpid 2>/dev/null
    for c in "0 auto" "1 auto" "1 xgemv" "0 auto" "1 auto"; do
      set -- $c
      CLLM_FUSED_ROPE_KV_WRITE=$1 CLLM_CUDA_MOE_PATH=$2 timeout 150 build-gpu/cllm bench latency --model /tmp/q30 \
        --load-format dummy --device cuda --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 \
        > "$OUT/lat.log" 2>&1
      echo "q30 bs1 fused=$1 moe=$2: $(grep -E 'decode \(tokens/s\)' "$OUT/lat.log" | head -1 | tr -s ' ') $(grep -m1 error "$OUT/lat.log")"
    done ;;
  attn)
    timeout 300 build-gpu/tests/kernels/test_cuda_attention > "$OUT/test_cuda_attention.log" 2>&1
    echo "test_cuda_attention rc=$? $(el): $(grep -c '^PASS' "$OUT/test_cuda_attention.log") PASS, $(grep -c '^FAIL' "$OUT/test_cuda_attention.log") FAIL"
    grep -E "^FAIL" "$OUT/test_cuda_attention.log" | head -12
    (cd build-gpu && ctest -R "kv_fp8" --output-on-failure --timeout 300) > "$OUT/kvfp8.log" 2>&1
    echo "kv fp8 golden tests rc=$?"; grep -E "tests passed|tests failed|Failed" "$OUT/kvfp8.log" | head -5 ;;
  tput-q)
    wait $mkpid 2>/dev/null
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
    wait $mkpid 2>/dev/null
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048"
    tput "l8 tput bf16" /tmp/l8 X=1 ;;
  tput-fp8)
    wait $mkpid 2>/dev/null
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048 --kv-cache-dtype fp8"
    tput "l8 tput kv=fp8" /tmp/l8 X=1
    tput "l8 tput kv=fp8 quantization=fp8" /tmp/l8 X=1 --quantization fp8 ;;
  fp8)
    grep -E "^FAIL|cases,|refused" "$OUT/test_cuda_linear_fp8.log" 2>/dev/null | head -8
    echo "took=lt-outer $(grep -c 'took=lt-outer' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null) lt-epilogue $(grep -c 'took=lt-epilogue' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null) gemv $(grep -c 'took=gemv' "$OUT/test_cuda_linear_fp8.log" 2>/dev/null)"
    grep -hE "top-1 agreement over|quantization_fp8|model_fp8" "$OUT/gpu_tests.log" 2>/dev/null | head -12
    timeout 200 build-gpu/bench_cuda_kernels "$OUT/bench_fp8.json" fp8 > "$OUT/bench_fp8.log" 2>&1
    echo "bench fp8 rc=$? $(el)"; grep -vE "^kernel" "$OUT/bench_fp8.log" | tr -s ' ' | head -40
    wait $mkpid 2>/dev/null
    for q in none fp8 none fp8; do
      timeout 180 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda --quantization $q \
        --input-len 128 --output-len 256 --num-iters 5 --num-iters-warmup 1 > "$OUT/lat_$q.log" 2>&1
      echo "l8 bs1 quantization=$q: $(grep -E 'decode \(tokens/s\)' "$OUT/lat_$q.log" | head -1 | tr -s ' ') | $(grep -E 'prefill \(TFLOP/s\)' "$OUT/lat_$q.log" | head -1 | tr -s ' ') $(grep -m1 -i error "$OUT/lat_$q.log")"
    done ;;
  tput-ab)
    wait $mkpid 2>/dev/null
    TARGS="--num-prompts 500 --input-len 1000 --output-len 1000 --max-model-len 2048"
    for a in fma mma; do tput "l8 tput bf16 attn=$a" /tmp/l8 CLLM_CUDA_ATTN_PREFILL=$a; done ;;
  decode)
    wait $mkpid 2>/dev/null
    timeout 300 build-gpu/cllm bench latency --model /tmp/l8 --load-format dummy --device cuda --input-len 1024 \
      --output-len 64 --batch-size 1,8,64,256 --num-iters 3 --max-model-len 1088 > "$OUT/l8_sweep.log" 2>&1
    echo "l8 decode sweep ctx1024 rc=$? $(el)"; tail -8 "$OUT/l8_sweep.log" ;;
  serve)
    wait $mkpid 2>/dev/null
    build-gpu/cllm serve --model /tmp/l8 --load-format dummy --device cuda --port 8199 --max-model-len 2048 \
      --served-model-name l8 > "$OUT/serve.log" 2>&1 &
    spid=$!
    timeout 400 build-gpu/cllm bench serve --model l8 --tokenizer /tmp/l8 --port 8199 --num-prompts 1000 \
      --random-input-len 512 --random-output-len 128 --max-concurrency 128 --ready-check-timeout-sec 300 \
      > "$OUT/bench_serve.log" 2>&1
    echo "l8 bench serve c128 512/128 rc=$? $(el)"
    grep -iE "throughput|TPOT|TTFT|failed" "$OUT/bench_serve.log" | head -12
    kill $spid; wait $spid 2>/dev/null ;;
  q30-tput)
    wait $mkpid 2>/dev/null
    TARGS="--num-prompts 1000 --input-len 1000 --output-len 1000 --max-model-len 2048"
    tput "q30 tput 1000 prompts" /tmp/q30 X=1 ;;
  moe)
    wait $mkpid 2>/dev/null
    timeout 300 build-gpu/cllm bench latency --model /tmp/q30 --load-format dummy --device cuda --input-len 1024 \
      --output-len 64 --batch-size 1,8,16,32,64 --num-iters 3 --max-model-len 1088 > "$OUT/q30_sweep.log" 2>&1
    echo "q30 sweep rc=$? $(el)"; tail -8 "$OUT/q30_sweep.log"
    TARGS="--num-prompts 200 --input-len 1000 --output-len 1000 --max-model-len 2048"
    tput "q30 tput 200 prompts" /tmp/q30 X=1 ;;
  esac
done
echo "total $(el)"

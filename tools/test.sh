#!/usr/bin/env bash
# README's test command: install dependencies, build (with the CUDA code
# compiled when nvcc is present), run every CPU test with CTest, then rebuild
# with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests again
# (the Python suite, label python, runs in the release pass only), then fuzz
# the request parsers (JSON, HTTP), the chat template renderer and what the
# router parses from replicas (event streams, header lines) for a bounded
# time. Tests labelled `gpu` (CUDA kernels vs the CPU reference, golden logits
# on CUDA) need a GPU: tools/gpu_run.sh runs them on the GPU machine; here they
# run only when a GPU is visible (nvidia-smi -L lists one).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
echo "== build (release) =="
tools/build.sh
echo "== ctest (release) =="
GPU_FILTER="-LE gpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then GPU_FILTER=""; fi
ctest --test-dir build --output-on-failure -j2 --timeout 900 $GPU_FILTER
if [ "${CLLM_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (ASan + UBSan, CPU only) =="
  BUILD_DIR=build-asan tools/build.sh -DCLLM_CUDA=OFF -DCLLM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  echo "== ctest (ASan + UBSan) =="
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j2 --timeout 1800 -LE "slow|python"
fi
FUZZ_SECONDS=${CLLM_FUZZ_SECONDS:-60}
if [ "$FUZZ_SECONDS" != 0 ]; then
  echo "== fuzz (libFuzzer + ASan/UBSan, ${FUZZ_SECONDS}s per target) =="
  cmake -S . -B build-fuzz -DCLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCLLM_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j"$(nproc)" --target openai_request_fuzz chat_template_fuzz tool_parser_fuzz http_request_fuzz \
    router_fuzz
  for t in openai_request_fuzz:fuzz/corpus chat_template_fuzz:fuzz/corpus/chat_template tool_parser_fuzz:fuzz/corpus/tool_parser \
           http_request_fuzz:fuzz/corpus/http_request router_fuzz:fuzz/corpus/router; do
    bin=${t%%:*}; corpus=${t#*:}
    work=$(mktemp -d); cp -r "$corpus"/. "$work"/
    build-fuzz/fuzz/$bin -max_total_time="$FUZZ_SECONDS" -max_len=4096 -print_final_stats=1 "$work" 2>&1 | tail -4
    rm -rf "$work"
  done
fi

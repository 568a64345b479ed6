#!/usr/bin/env bash
# README's test command: install dependencies, build (with the CUDA code
# compiled when nvcc is present), run every CPU test with CTest, then rebuild
# with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests again.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
echo "== build (release) =="
tools/build.sh
echo "== ctest (release) =="
ctest --test-dir build --output-on-failure -j2 --timeout 900
if [ "${CLLM_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (ASan + UBSan, CPU only) =="
  BUILD_DIR=build-asan tools/build.sh -DCLLM_CUDA=OFF -DCLLM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  echo "== ctest (ASan + UBSan) =="
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j2 --timeout 1800 -LE slow
fi

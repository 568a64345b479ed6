#!/usr/bin/env bash
# Configure and build cllm into build/ (CUDA backend too when nvcc is on PATH).
# Extra arguments go to cmake's configure step (e.g. -DCLLM_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

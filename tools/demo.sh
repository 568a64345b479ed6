#!/usr/bin/env bash
# README's first command: install dependencies, build, and generate greedily
# with the bundled demo model (stories260K, offline, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
CLLM_SKIP_PIP=1 tools/install_deps.sh
tools/build.sh -DCLLM_CUDA=OFF
exec build/cllm generate --model models/stories260K --prompt "${1:-Once upon a time}" --max-tokens 64 --temperature 0

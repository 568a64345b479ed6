#!/usr/bin/env bash
# Install what cllm needs to build and test on Debian/Ubuntu: -dev packages
# from apt (libuv + llhttp: the HTTP server; node-llhttp ships llhttp as C
# sources, compiled by CMakeLists.txt), and the Python packages the tests
# compare against (Hugging Face tokenizers) from PyPI, plus
# lm-evaluation-harness without its heavy optional dependencies (no torch,
# no transformers: tests/lm_eval uses the server's own tokenizer endpoints).
# Idempotent: skips what is already there.
set -euo pipefail
PKGS="build-essential cmake pkg-config libjansson-dev libpcre2-dev libopenblas-dev libcurl4-openssl-dev
      libutf8proc-dev libxxhash-dev libuv1-dev node-llhttp libyaml-dev python3 python3-pip python3-dev python3-venv
      clang libclang-rt-dev curl libopenmpi-dev openmpi-bin"
missing=""
# tests/multihost: two "hosts" as network namespaces (iproute2) with a firewall between them (nftables)
PKGS="$PKGS iproute2 nftables"
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
if [ "${CLLM_SKIP_PIP:-0}" != 1 ]; then
  python3 -c "import tokenizers, pytest, numpy, safetensors, prometheus_client, openai, jinja2" 2>/dev/null || \
    python3 -m pip install -q "tokenizers==0.23.*" pytest numpy safetensors prometheus-client openai jinja2 2>/dev/null || \
    python3 -m pip install -q tokenizers pytest numpy safetensors prometheus-client openai jinja2
  python3 -c "import yaml" 2>/dev/null || python3 -m pip install -q pyyaml
  # lm-eval's import path for an API model with a local YAML task needs datasets and sacrebleu
  # (imported at module level) and its API extras; its declared dependencies (evaluate,
  # scikit-learn, rouge-score, ...) are not used by tests/lm_eval.
  python3 -c "import lm_eval, datasets, sacrebleu, pytablewriter, tenacity, aiohttp" 2>/dev/null || {
    python3 -m pip install -q --no-deps "lm-eval==0.4.13" &&
    python3 -m pip install -q datasets sacrebleu pytablewriter tenacity aiohttp requests tqdm; }
fi

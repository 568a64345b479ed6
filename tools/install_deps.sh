#!/usr/bin/env bash
# Install what cllm needs to build and test on Debian/Ubuntu: -dev packages
# from apt, and the Python packages the tests compare against (Hugging Face
# tokenizers) from PyPI. Idempotent: skips what is already there.
set -euo pipefail
PKGS="build-essential cmake pkg-config libjansson-dev libpcre2-dev libopenblas-dev libcurl4-openssl-dev
      libutf8proc-dev libxxhash-dev libmicrohttpd-dev libyaml-dev python3 python3-pip python3-dev python3-venv
      clang libclang-rt-dev curl libopenmpi-dev openmpi-bin"
missing=""
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
fi

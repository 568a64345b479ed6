#!/usr/bin/env bash
# Issue 10 on the GPU machine, after `bash tools/gpu_issue8.sh build` (or tools/gpu_run.sh) built build-gpu/:
# the CUDA MoE kernel test and the MoE golden-logit tests, `cllm bench moe` (Qwen3-30B-A3B shape), and
# `cllm bench latency` on the Qwen3-30B-A3B architecture with random weights (--load-format dummy: only
# config.json and a tokenizer are read; make_checkpoint.py writes a one-layer checkpoint and the config is
# set to 48 layers). Decode is compared with the active-weight roofline that bench latency prints.
# Env: OUT (logs), CLLM_Q30 (model folder, default /tmp/q30).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
B=build-gpu
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu   # the carried libraries and theirs (libcurl needs libssh2)
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
Q=${CLLM_Q30:-/tmp/q30}
if [ -f "$OUT/gpu_tests.log" ]; then  # gpu_issue8.sh build ran every GPU test already
  echo "== MoE GPU tests (from gpu_tests.log) =="; grep -iE "moe" "$OUT/gpu_tests.log" | grep -E "Passed|Failed|Timeout" | head
else
  echo "== MoE GPU tests =="
  (cd $B && ctest -R "moe" --output-on-failure --timeout 300) > "$OUT/moe_tests.log" 2>&1
  echo "moe tests rc=$?"; grep -E "tests passed|tests failed|Failed|Passed" "$OUT/moe_tests.log" | head -20
fi
echo "== bench moe (Qwen3-30B-A3B shape) =="
timeout 150 $B/cllm bench moe --device cuda > "$OUT/bench_moe.log" 2>&1; echo "rc=$?"; tail -30 "$OUT/bench_moe.log"
if [ ! -f $Q/config.json ]; then
  python3 .carry/make_checkpoint.py --preset qwen3-30b-a3b --out $Q --tokenizer .carry/tokenizers/llama3 --layers 1 \
    > "$OUT/mk_q30.log" 2>&1 || { echo "make_checkpoint failed"; tail -5 "$OUT/mk_q30.log"; }
  python3 -c 'import json,sys; p = sys.argv[1] + "/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = 48; json.dump(c, open(p, "w"), indent=2)' $Q
fi
echo "== bench latency Qwen3-30B-A3B, bs1 ctx128 =="
timeout 150 $B/cllm bench latency --model $Q --load-format dummy --device cuda --input-len 128 --output-len 256 \
  --num-iters 5 --num-iters-warmup 1 --output-json "$OUT/lat_q30.json" > "$OUT/lat_q30.log" 2>&1; echo "rc=$?"
grep -E "bench latency|decode \(tokens|prefill \(TFLOP" "$OUT/lat_q30.log"
echo "== bs1 decode split (bench throughput --profile: synchronizes after each op) =="
timeout 120 $B/cllm bench throughput --model $Q --load-format dummy --device cuda --num-prompts 1 --input-len 128 \
  --output-len 256 --max-model-len 512 --profile > "$OUT/prof_q30.log" 2>&1; echo "rc=$?"; tail -25 "$OUT/prof_q30.log"
echo "== batched decode Qwen3-30B-A3B, ctx 1024 =="
# 61 GB of weights leave about 15 GB of an 80 GB card for the KV cache (98 KiB a token): batch 64 x 1088 fits.
timeout 150 $B/cllm bench latency --model $Q --load-format dummy --device cuda --batch-size 1,8,32,64 \
  --input-len 1024 --output-len 64 --num-iters 2 --num-iters-warmup 1 > "$OUT/sweep_q30.log" 2>&1; echo "rc=$?"
tail -6 "$OUT/sweep_q30.log"

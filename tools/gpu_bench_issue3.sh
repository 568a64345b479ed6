#!/usr/bin/env bash
# Issue 3 measurements on the GPU machine (one call): build build-gpu/ (the
# build half of tools/gpu_run.sh, no tests), a Llama-3.1-8B config with
# --load-format dummy weights, then
#   cllm bench latency --batch-size 1..256 --input-len 1024 --output-len 128
#   cllm bench throughput --num-prompts 200 (profiled: time split)
#   cllm bench throughput --num-prompts ${CLLM_TP_PROMPTS:-1000} (unprofiled: the figures)
# within CLLM_TOTAL_S seconds (default 450). Logs and JSON under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
t0=$(date +%s)
sed -n '1,/^t_build=/p' tools/gpu_run.sh > /tmp/build_only.sh
bash /tmp/build_only.sh > "$OUT/build_stdout.log" 2>&1
echo "build: rc=$? in $(( $(date +%s) - t0 )) s"; tail -3 "$OUT/build_stdout.log"
B=build-gpu
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x $B/cllm ] || { echo "no $B/cllm"; exit 1; }
M=/tmp/l8
python3 .carry/make_checkpoint.py --preset llama3-8b --out $M --tokenizer .carry/tokenizers/llama3 --layers 1 > "$OUT/mk.log" 2>&1 || { echo "make_checkpoint failed"; tail -5 "$OUT/mk.log"; }
python3 -c 'import json; p = "/tmp/l8/config.json"; c = json.load(open(p)); c["num_hidden_layers"] = 32; json.dump(c, open(p, "w"), indent=2)'
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/env.log"
echo "== latency sweep ($(( $(date +%s) - t0 )) s) =="
timeout 170 $B/cllm bench latency --model $M --load-format dummy --device cuda --batch-size 1,2,4,8,16,32,64,128,256 \
    --input-len 1024 --output-len 128 --num-iters ${CLLM_ITERS:-2} --num-iters-warmup 1 --output-json "$OUT/latency_sweep.json" 2>&1 | tee "$OUT/latency_sweep.log"
echo "== throughput 200 prompts, profiled ($(( $(date +%s) - t0 )) s) =="
timeout 100 $B/cllm bench throughput --model $M --load-format dummy --device cuda --num-prompts 200 --input-len 1000 \
    --output-len 1000 --max-model-len 2048 --profile --output-json "$OUT/throughput_200_profile.json" 2>&1 | tee "$OUT/throughput_200_profile.log"
left=$(( ${CLLM_TOTAL_S:-450} - ($(date +%s) - t0) ))
echo "== throughput ${CLLM_TP_PROMPTS:-1000} prompts ($(( $(date +%s) - t0 )) s, ${left} s left) =="
[ $left -gt 20 ] && timeout $left $B/cllm bench throughput --model $M --load-format dummy --device cuda --num-prompts ${CLLM_TP_PROMPTS:-1000} \
    --input-len 1000 --output-len 1000 --max-model-len 2048 --output-json "$OUT/throughput_${CLLM_TP_PROMPTS:-1000}.json" 2>&1 | tee "$OUT/throughput_${CLLM_TP_PROMPTS:-1000}.log"
echo "rc=$? total $(( $(date +%s) - t0 )) s"

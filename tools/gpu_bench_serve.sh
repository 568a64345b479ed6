#!/usr/bin/env bash
# `cllm bench serve` on the GPU machine, after tools/gpu_run.sh built build-gpu/:
# a random-weight Llama-3.1-8B checkpoint served by `cllm serve --device cuda`,
# then random prompts (input 512, output 128, ignore_eos) at max concurrency
# 1, 8, 32, 128 (4 x concurrency prompts, at least 16). JSON results and the
# summaries go to $OUT; a table of them is printed last.
# Env: OUT, CLLM_CKPT (default /tmp/l8; made if absent), CLLM_MAKE_CHECKPOINT,
#      CLLM_TOKENIZER, CLLM_BENCH_CONCURRENCY (default "1 8 32 128").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
CK=${CLLM_CKPT:-/tmp/l8}
[ -f "$CK/config.json" ] || python3 "${CLLM_MAKE_CHECKPOINT:-.carry/make_checkpoint.py}" --preset llama3-8b --out "$CK" \
    --tokenizer "${CLLM_TOKENIZER:-.carry/tokenizers/llama3}" > "$OUT/make_checkpoint.log" 2>&1 || { tail -5 "$OUT/make_checkpoint.log"; exit 1; }
build-gpu/cllm serve --model "$CK" --device cuda --port 8000 --served-model-name llama3-8b --max-model-len 4096 \
    > "$OUT/serve.log" 2>&1 &
SP=$!
ok=0
for i in $(seq 1 300); do
  curl -sf http://127.0.0.1:8000/health > /dev/null && { ok=1; break; }
  kill -0 $SP 2>/dev/null || break
  sleep 1
done
[ $ok = 1 ] || { echo "cllm serve did not become healthy"; tail -20 "$OUT/serve.log"; kill $SP 2>/dev/null; exit 1; }
echo "server healthy after ${i}s"
for c in ${CLLM_BENCH_CONCURRENCY:-1 8 32 128}; do
  n=$((4 * c)); [ $n -lt 16 ] && n=16
  build-gpu/cllm bench serve --base-url http://127.0.0.1:8000 --model llama3-8b --tokenizer "$CK" --num-prompts $n \
      --random-input-len 512 --random-output-len 128 --max-concurrency $c --output-json "$OUT/bench_serve_c$c.json" \
      > "$OUT/bench_serve_c$c.txt" 2>&1
  echo "== max concurrency $c, $n prompts: rc $?"; tail -32 "$OUT/bench_serve_c$c.txt"
done
curl -s http://127.0.0.1:8000/metrics > "$OUT/metrics.txt"
kill -TERM $SP; wait $SP; echo "serve exit $?"
python3 - "$OUT" <<'PY'
import json, sys, glob, os
rows = []
for f in glob.glob(os.path.join(sys.argv[1], "bench_serve_c*.json")):
    d = json.load(open(f)); rows.append(d)
rows.sort(key=lambda d: d["max_concurrency"])
print("| conc | prompts | ok | req/s | out tok/s | total tok/s | TTFT mean/med/p99 ms | TPOT mean/med/p99 ms | ITL mean/med/p99 ms | E2E mean/med/p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for d in rows:
    f = lambda k: "%.1f / %.1f / %.1f" % (d["mean_%s_ms" % k], d["median_%s_ms" % k], d["p99_%s_ms" % k])
    print("| %d | %d | %d | %.2f | %.0f | %.0f | %s | %s | %s | %s |" % (d["max_concurrency"], d["num_prompts"], d["completed"],
          d["request_throughput"], d["output_throughput"], d["total_token_throughput"], f("ttft"), f("tpot"), f("itl"), f("e2el")))
PY

#!/usr/bin/env bash
# Many concurrent SSE streams on the CPU backend with the tiny model: does the
# front door limit serving? `cllm serve` (--max-num-seqs covering every stream)
# is driven by `cllm bench serve` at --max-concurrency 64 and 1000 (prompts
# 4 x concurrency, random input 16 / output 128 tokens, ignore_eos, streaming),
# and `cllm bench throughput` runs the same workload offline (the engine alone:
# the ceiling). Prints output tokens/s, ITL p99 and serving/offline per row;
# JSON results go to $OUT.
# Usage: tools/bench_sse_streams.sh [build dir] (env OUT, CONCURRENCY="64 1000", IN=16, OUTLEN=128)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
OUT=${OUT:-/tmp/cllm_sse_bench}; mkdir -p "$OUT"
MODEL=models/stories260K
IN=${IN:-16}; OUTLEN=${OUTLEN:-128}
ulimit -n "$(ulimit -Hn)"
"$B/cllm" serve --model $MODEL --port 0 --num-threads 1 --served-model-name stories --max-num-seqs 1024 \
    --max-model-len 512 > "$OUT/serve.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$OUT/serve.log" | head -1)
  [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 0.1
done
# CPU seconds of the server's threads by name (cllm-http: the front door's loop; cllm-engine)
cpu() { for t in /proc/$SP/task/*; do echo "$(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done |
        awk -v hz="$(getconf CLK_TCK)" '{a[$1] += $2} END {printf "%.2f %.2f", a["cllm-http"] / hz, a["cllm-engine"] / hz}'; }
echo "| streams | offline out tok/s (ceiling) | serving out tok/s | serving / offline | TTFT p99 ms | ITL median ms | ITL p99 ms | failed | CPU s: HTTP loop / engine |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in ${CONCURRENCY:-64 1000}; do
  n=$((4 * c))
  OMP_NUM_THREADS=1 "$B/cllm" bench throughput --model $MODEL --num-prompts $n --input-len $IN --output-len $OUTLEN \
      --max-num-seqs $c --max-model-len 512 > "$OUT/offline_c$c.txt" 2>&1
  off=$(sed -n 's/.*requests\/s, [0-9.]* total tokens\/s, \([0-9.]*\) output tokens\/s.*/\1/p' "$OUT/offline_c$c.txt")
  read -r h0 e0 <<< "$(cpu)"
  "$B/cllm" bench serve --base-url "http://127.0.0.1:$PORT" --model stories --tokenizer $MODEL --num-prompts $n \
      --random-input-len $IN --random-output-len $OUTLEN --max-concurrency $c --output-json "$OUT/serve_c$c.json" \
      > "$OUT/serve_c$c.txt" 2>&1 || true
  read -r h1 e1 <<< "$(cpu)"
  python3 - "$OUT/serve_c$c.json" "$c" "$off" "$h0" "$h1" "$e0" "$e1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); off = float(sys.argv[3]); h0, h1, e0, e1 = map(float, sys.argv[4:8])
print("| %s | %.0f | %.0f | %.1f %% | %.1f | %.2f | %.2f | %d | %.2f / %.2f |" % (sys.argv[2], off,
      d["output_throughput"], 100 * d["output_throughput"] / off, d["p99_ttft_ms"], d["median_itl_ms"],
      d["p99_itl_ms"], d["num_prompts"] - d["completed"], h1 - h0, e1 - e0))
PY
done

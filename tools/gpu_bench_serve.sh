#!/usr/bin/env bash
# Serving against offline on the GPU machine, after tools/gpu_run.sh built build-gpu/
# (it needs the carried .deb files of the build, now with libuv1 libuv1-dev node-llhttp):
# a random-weight Llama-3.1-8B checkpoint served by `cllm serve --device cuda
# --max-num-seqs S`, `cllm bench serve` (random input 512 / output 128, ignore_eos)
# with --max-concurrency S and N prompts, then, with the server stopped,
# `cllm bench throughput` on the same workload (N prompts of 512 in / 128 out at once,
# --max-num-seqs S): the ceiling. Prints both and serving / offline (issue #15: >= 95 %).
# CLLM_BENCH_CONCURRENCY adds serving rows at other concurrencies. JSON results and
# logs go to $OUT.
# cllm needs the carried libraries and theirs (the carried libcurl's libssh2, which an
# executable's DT_RUNPATH does not cover), so LD_LIBRARY_PATH is set for cllm alone and never
# exported: with it, the machine's own curl loads the carried libcurl and fails ("undefined
# symbol: curl_global_trace").
# Env: OUT, CLLM_CKPT (default /tmp/l8; made if absent), CLLM_MAKE_CHECKPOINT, CLLM_TOKENIZER,
#      CLLM_MAX_NUM_SEQS (S, default 128), CLLM_NUM_PROMPTS (N, default 1024),
#      CLLM_BENCH_CONCURRENCY (extra concurrencies, default none).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
CK=${CLLM_CKPT:-/tmp/l8}
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu   # cllm alone gets the carried libraries' path, not curl
CLLM="env LD_LIBRARY_PATH=$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64 build-gpu/cllm"
S=${CLLM_MAX_NUM_SEQS:-128}
N=${CLLM_NUM_PROMPTS:-1024}
[ -f "$CK/config.json" ] || python3 "${CLLM_MAKE_CHECKPOINT:-.carry/make_checkpoint.py}" --preset llama3-8b --out "$CK" \
    --tokenizer "${CLLM_TOKENIZER:-.carry/tokenizers/llama3}" > "$OUT/make_checkpoint.log" 2>&1 || { tail -5 "$OUT/make_checkpoint.log"; exit 1; }
$CLLM serve --model "$CK" --device cuda --port 8000 --served-model-name llama3-8b --max-model-len 4096 \
    --max-num-seqs "$S" > "$OUT/serve.log" 2>&1 &
SP=$!
ok=0
for i in $(seq 1 300); do
  curl -sf http://127.0.0.1:8000/health > /dev/null && { ok=1; break; }
  kill -0 $SP 2>/dev/null || break
  sleep 1
done
[ $ok = 1 ] || { echo "cllm serve did not become healthy"; tail -20 "$OUT/serve.log"; kill $SP 2>/dev/null; exit 1; }
echo "server healthy after ${i}s"
for c in $S ${CLLM_BENCH_CONCURRENCY:-}; do
  n=$N; [ "$c" != "$S" ] && { n=$((4 * c)); [ $n -lt 16 ] && n=16; }
  $CLLM bench serve --base-url http://127.0.0.1:8000 --model llama3-8b --tokenizer "$CK" --num-prompts $n \
      --random-input-len 512 --random-output-len 128 --max-concurrency $c --output-json "$OUT/bench_serve_c$c.json" \
      > "$OUT/bench_serve_c$c.txt" 2>&1
  echo "== max concurrency $c, $n prompts: rc $?"; tail -32 "$OUT/bench_serve_c$c.txt"
done
curl -s http://127.0.0.1:8000/metrics > "$OUT/metrics.txt"
kill -TERM $SP; wait $SP; echo "serve exit $?"
$CLLM bench throughput --model "$CK" --device cuda --num-prompts "$N" --input-len 512 --output-len 128 \
    --max-num-seqs "$S" --max-model-len 4096 > "$OUT/bench_throughput.txt" 2>&1
echo "== bench throughput, $N prompts, max_num_seqs $S: rc $?"; tail -4 "$OUT/bench_throughput.txt"
python3 - "$OUT" "$S" <<'PY'
import glob, json, os, re, sys
out, S = sys.argv[1], int(sys.argv[2])
txt = open(os.path.join(out, "bench_throughput.txt")).read()
m = re.search(r"([0-9.]+) output tokens/s", txt)
offline = float(m.group(1)) if m else float("nan")
rows = [json.load(open(f)) for f in glob.glob(os.path.join(out, "bench_serve_c*.json"))]
rows.sort(key=lambda d: d["max_concurrency"])
print("| conc | prompts | ok | req/s | out tok/s | TTFT mean/med/p99 ms | TPOT mean/med/p99 ms | ITL mean/med/p99 ms | serving / offline |")
print("|---|---|---|---|---|---|---|---|---|")
for d in rows:
    f = lambda k: "%.1f / %.1f / %.1f" % (d["mean_%s_ms" % k], d["median_%s_ms" % k], d["p99_%s_ms" % k])
    print("| %d | %d | %d | %.2f | %.0f | %s | %s | %s | %.1f %% |" % (d["max_concurrency"], d["num_prompts"],
          d["completed"], d["request_throughput"], d["output_throughput"], f("ttft"), f("tpot"), f("itl"),
          100 * d["output_throughput"] / offline))
print("offline (bench throughput, same workload, max_num_seqs %d): %.0f output tokens/s" % (S, offline))
for d in rows:
    if d["max_concurrency"] == S:
        r = d["output_throughput"] / offline
        print("serving / offline at concurrency %d = max_num_seqs: %.1f %% (target >= 95 %%: %s)" % (S, 100 * r, "met" if r >= 0.95 else "MISSED"))
PY

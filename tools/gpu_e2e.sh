#!/usr/bin/env bash
# End-to-end checks and benchmarks on the GPU machine, after tools/gpu_run.sh
# has built build-gpu/:
#   1. golden logits of the tiny fixtures (transformers fp32) on the CUDA backend (bf16);
#   2. full-size random-weight Llama-3.1-8B and Qwen3-8B checkpoints
#      (shared/device/make_checkpoint.py): CUDA logits vs transformers bf16 on the
#      same prompts (relative error, teacher-forced top-1 agreement);
#   3. `cllm bench latency` on Llama-3.1-8B: decode at context 128 and 2048,
#      prefill of 2048 tokens, weight load time; figures beside the roofline.
# Env: OUT (logs), CLLM_MAKE_CHECKPOINT (default .carry/make_checkpoint.py),
#      CLLM_TOKENIZER (default .carry/tokenizers/llama3), CLLM_E2E_MODELS
#      (default "llama3-8b qwen3-8b"), CLLM_CKPT_DIR (default /tmp/ckpt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cllm_gpu_out}; mkdir -p "$OUT"
B=build-gpu
LIBD=/opt/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$LIBD:$LIBD/openblas-pthread:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
MK=${CLLM_MAKE_CHECKPOINT:-.carry/make_checkpoint.py}
TOK=${CLLM_TOKENIZER:-.carry/tokenizers/llama3}
CK=${CLLM_CKPT_DIR:-/tmp/ckpt}
SUM="$OUT/e2e_summary.txt"; : > "$SUM"
say() { echo "$*" | tee -a "$SUM"; }

say "== golden logits, tiny fixtures, CUDA bf16 (tolerance: max|a-b|/max|ref| <= 3e-2) =="
for f in tests/fixtures/*/; do
  r=$($B/tests/e2e/test_golden_logits "$f" cuda 3e-2 2>&1 | tail -3 | tr '\n' ' ')
  say "  $(basename $f): $r"
done

for m in ${CLLM_E2E_MODELS:-llama3-8b qwen3-8b}; do
  d=$CK/$m
  say "== $m: checkpoint, transformers bf16 golden, CUDA compare =="
  t0=$(date +%s)
  python3 "$MK" --preset $m --out $d --tokenizer "$TOK" > "$OUT/mk_$m.log" 2>&1 || { say "  make_checkpoint failed"; tail -5 "$OUT/mk_$m.log"; continue; }
  for dt in $([ "${CLLM_E2E_SKIP_GOLDEN:-0}" = 1 ] || echo float32 bfloat16); do
    python3 tools/make_fixtures.py --golden-only $d --lengths 16,128,512 --dtype $dt --vocab-limit 128000 \
        --golden-name golden_$dt.safetensors >> "$OUT/golden_$m.log" 2>&1 || { say "  golden $dt failed"; tail -5 "$OUT/golden_$m.log"; }
  done
  say "  made in $(( $(date +%s) - t0 ))s"
  if [ "${CLLM_E2E_SKIP_GOLDEN:-0}" != 1 ]; then
  say "  transformers bf16 vs transformers fp32 (the yardstick):"
  python3 tools/compare_logits.py $d/golden_bfloat16.safetensors $d/golden_float32.safetensors 2>&1 | sed 's/^.*N=/    N=/' | tee -a "$SUM"
  say "  cllm CUDA bf16 vs transformers fp32:"
  $B/tests/e2e/test_golden_logits $d cuda 1.0 $d/golden_float32.safetensors 2>&1 | tee "$OUT/compare_$m.log" | sed 's/^.*input_ids/    input_ids/' | tail -4 | tee -a "$SUM"
  say "  cllm CUDA bf16 vs transformers bf16:"
  $B/tests/e2e/test_golden_logits $d cuda 1.0 $d/golden_bfloat16.safetensors 2>&1 | tee -a "$OUT/compare_$m.log" | sed 's/^.*input_ids/    input_ids/' | tail -4 | tee -a "$SUM"
  fi
  if [ $m = llama3-8b ]; then
    for ctx in 128 2048; do
      say "  -- bench latency input-len $ctx output-len 256 --"
      $B/cllm bench latency --model $d --device cuda --input-len $ctx --output-len 256 --num-iters 5 \
          --num-iters-warmup 1 --output-json "$OUT/bench_latency_$ctx.json" 2>&1 | tee "$OUT/bench_latency_$ctx.log" | tail -12 | sed 's/^/  /' | tee -a "$SUM"
    done
  fi
  if [ $m = llama3-8b ]; then
    say "  -- engine on CUDA: 32 requests through cllm generate --input (continuous batching) --"
    python3 - > $OUT/prompts.jsonl <<'PY'
import json
for i in range(32):
    print(json.dumps({"prompt_token_ids": [128000] + [(i * 7919 + j * 104729) % 120000 + 100 for j in range(16 + 8 * i)],
                      "max_tokens": 64, "temperature": 0 if i % 2 == 0 else 0.8, "seed": i, "ignore_eos": True}))
PY
    t0=$(date +%s.%N)
    $B/cllm generate --model $d --device cuda --input $OUT/prompts.jsonl --output $OUT/engine_out.jsonl \
        --max-num-seqs 32 > $OUT/engine.log 2>&1; rc=$?
    t1=$(date +%s.%N)
    say "    rc=$rc, $(grep -c finish_reason $OUT/engine_out.jsonl 2>/dev/null) results, wall $(python3 -c "print(round($t1-$t0,1))") s (incl. load); $(grep -iE 'KV cache|blocks' $OUT/engine.log | head -2 | tr '\n' ' ')"
    tail -3 $OUT/engine.log | sed 's/^/    /'
  fi
  rm -rf $d
done
echo; echo "================ e2e summary ================"; cat "$SUM"

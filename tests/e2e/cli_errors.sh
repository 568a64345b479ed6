#!/usr/bin/env bash
# `cllm generate` end to end: the greedy story from an empty prompt, and bad
# input (each must give a one-line message and a non-zero exit, never a crash).
# usage: cli_errors.sh CLLM_BINARY MODEL_DIR
set -u
CLLM=$1; MODEL=$2
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
fail=0

out=$("$CLLM" generate --model "$MODEL" --prompt "" --temperature 0 --max-tokens 32 2>"$TMP/err")
rc=$?
case "$out" in
  "Once upon a time, there was a little girl named Lily."*) echo "ok: greedy story" ;;
  *) echo "FAIL: greedy story (rc $rc): '$out' / $(cat "$TMP/err")"; fail=1 ;;
esac

# expect WANT_RC PATTERN -- ARGS...: exit code, one stderr line matching PATTERN
# (besides the engine's "cllm info:" log lines)
expect() {
  local want=$1 pat=$2; shift 3
  "$CLLM" "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  local lines; lines=$(grep -v '^cllm info:' "$TMP/err" | grep -c .)
  if [ "$rc" -ne "$want" ] || ! grep -qiE -e "$pat" "$TMP/err" || [ "$lines" -ne 1 ]; then
    echo "FAIL: cllm $* -> rc $rc (want $want), stderr: $(cat "$TMP/err")"; fail=1
  else
    echo "ok: $* -> $(cat "$TMP/err")"
  fi
}

expect 1 "no directory|not found" -- generate --model "$TMP/nope" --prompt hi
expect 2 "unknown flag '--bogus'" -- generate --model "$MODEL" --prompt hi --bogus 1
expect 2 "--max-tokens" -- generate --model "$MODEL" --prompt hi --max-tokens abc
expect 2 "--temperature needs a value" -- generate --model "$MODEL" --prompt hi --temperature
expect 1 "maximum context length is 8" -- generate --model "$MODEL" --max-model-len 8 \
  --prompt "Once upon a time there was a big dog who liked to run in the park every day"
expect 1 "without CUDA|no.*GPU|cuda" -- generate --model "$MODEL" --prompt hi --device cuda
expect 1 "float32|bfloat16" -- generate --model "$MODEL" --prompt hi --dtype bfloat16

mkdir -p "$TMP/gpt2"; cp "$MODEL"/* "$TMP/gpt2/"; chmod -R u+w "$TMP/gpt2"
sed -i 's/"model_type": "llama"/"model_type": "gpt2"/' "$TMP/gpt2/config.json"
expect 1 "gpt2" -- generate --model "$TMP/gpt2" --prompt hi

mkdir -p "$TMP/trunc"; cp "$MODEL"/* "$TMP/trunc/"; chmod -R u+w "$TMP/trunc"
truncate -s 100000 "$TMP/trunc/model.safetensors"
expect 1 "safetensors" -- generate --model "$TMP/trunc" --prompt hi

mkdir -p "$TMP/hdr"; cp "$MODEL"/* "$TMP/hdr/"; chmod -R u+w "$TMP/hdr"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$TMP/hdr/model.safetensors" conv=notrunc status=none
expect 1 "safetensors" -- generate --model "$TMP/hdr" --prompt hi

expect 2 "batch-size" -- bench latency --model "$MODEL" --batch-size 0
"$CLLM" bench latency --model "$MODEL" --input-len 16 --output-len 8 --num-iters 2 --output-json "$TMP/b.json" >"$TMP/out" 2>"$TMP/err" \
  && grep -q decode_tokens_per_s "$TMP/b.json" && echo "ok: bench latency" || { echo "FAIL: bench latency: $(cat "$TMP/err")"; fail=1; }
exit $fail

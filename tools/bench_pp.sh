#!/usr/bin/env bash
# Pipeline overlap on the CPU: the same prefill-heavy workload through 2
# pipeline stages with 1 micro-batch per step (no overlap: one stage works at
# a time) and with M micro-batches (GPipe within a step: stage 1 works on
# micro-batch m-1 while stage 0 works on m), interleaved runs, median step
# time. Ceiling: with P stages and M micro-batches a step takes
# (M + P - 1) / (M * P) of the one-micro-batch step (3/4 for P = M = 2).
# A ~85M-parameter float32 Llama (dummy weights, 12 layers) keeps the
# stages compute-bound; one thread per rank, one rank per core.
# usage: tools/bench_pp.sh [BUILD_DIR] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
RUNS=${2:-3}
M=$(mktemp -d)
trap 'rm -rf "$M"' EXIT
cp models/stories260K/tokenizer.json models/stories260K/tokenizer_config.json "$M/"
python3 - "$M" <<'EOF'
import json, sys
c = json.load(open("models/stories260K/config.json"))
c.update(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
         head_dim=64, max_position_embeddings=1024, torch_dtype="float32")
json.dump(c, open(sys.argv[1] + "/config.json", "w"))
EOF
run() { # micro-batches -> ms/step
  OPENBLAS_NUM_THREADS=1 "$B/cllm" bench throughput --model "$M" --load-format dummy --num-prompts 16 --input-len 256 \
    --output-len 4 --max-num-seqs 16 --max-num-batched-tokens 4096 --num-threads 1 -pp 2 --pp-micro-batches "$1" 2>/dev/null |
    sed -n 's/.* \([0-9.]*\) ms\/step/\1/p'
}
one=(); two=()
for ((i = 0; i < RUNS; i++)); do one+=("$(run 1)"); two+=("$(run 2)"); done
python3 - "${one[*]}" "${two[*]}" <<'EOF'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"pipeline_parallel_size 2, 16 prompts x 256 tokens (one 4096-token prefill step + 3 decode steps), {len(a)} runs each")
print(f"{'micro-batches':>14} {'ms/step (median)':>18} {'runs':>30}")
print(f"{1:>14} {ma:>18.1f} {' '.join(f'{x:.0f}' for x in a):>30}")
print(f"{2:>14} {mb:>18.1f} {' '.join(f'{x:.0f}' for x in b):>30}")
print(f"ratio {mb / ma:.3f} (ceiling 0.750: (M + P - 1) / (M P))")
EOF

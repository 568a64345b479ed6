#!/usr/bin/env python3
"""Compare two golden-logit files (input_ids.N / logits.N, as tools/make_fixtures.py
writes them) with the metrics test_golden_logits prints: max|a-b|/max|ref|,
||a-b||/||ref|| and top-1 agreement. Used on the GPU machine to measure the
error transformers' own bf16 run has against its fp32 run: the yardstick for
cllm's bf16 error.

    python3 tools/compare_logits.py TEST.safetensors REF.safetensors
"""
import sys
from safetensors.numpy import load_file

a, r = load_file(sys.argv[1]), load_file(sys.argv[2])
n = 0
while f"logits.{n}" in r:
    x, y = a[f"logits.{n}"].astype("float64"), r[f"logits.{n}"].astype("float64")
    assert (a[f"input_ids.{n}"] == r[f"input_ids.{n}"]).all(), "different prompts"
    d = abs(x - y)
    top1 = int((x.argmax(-1) == y.argmax(-1)).sum())
    print(f"{sys.argv[1]} vs {sys.argv[2]} N={n} T={x.shape[0]}: max rel err {d.max() / abs(y).max():.3g}, "
          f"rel L2 err {(d ** 2).sum() ** 0.5 / (y ** 2).sum() ** 0.5:.3g}, top-1 agreement {top1}/{x.shape[0]}")
    n += 1

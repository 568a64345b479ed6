#!/usr/bin/env python3
"""Parse cllm's /metrics text with prometheus_client's own parser (the outside
truth for the exposition format) and check families, types, label escaping,
cumulative histogram buckets and values. Usage: check_metrics.py TEST_METRICS_BIN
Needs `pip install prometheus-client`."""
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

text = subprocess.run([sys.argv[1], "--print"], check=True, capture_output=True, text=True).stdout
fams = {f.name: f for f in text_string_to_metric_families(text)}
MODEL = 'my "model"\\x'

want_types = {
    "cllm:num_requests_running": "gauge", "cllm:num_requests_waiting": "gauge",
    "cllm:kv_cache_usage_perc": "gauge", "cllm:prefix_cache_queries": "counter",
    "cllm:prefix_cache_hits": "counter", "cllm:num_preemptions": "counter",
    "cllm:prompt_tokens": "counter", "cllm:generation_tokens": "counter",
    "cllm:request_success": "counter", "cllm:time_to_first_token_seconds": "histogram",
    "cllm:time_per_output_token_seconds": "histogram", "cllm:e2e_request_latency_seconds": "histogram",
}
errors = []
for name, typ in want_types.items():
    if name not in fams:
        errors.append(f"missing family {name}; have {sorted(fams)}")
    elif fams[name].type != typ:
        errors.append(f"{name}: type {fams[name].type}, want {typ}")


def value(sample_name, **labels):
    for f in fams.values():
        for s in f.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                if s.labels.get("model_name") != MODEL:
                    errors.append(f"{sample_name}: model_name label {s.labels.get('model_name')!r}")
                return s.value
    errors.append(f"no sample {sample_name} {labels}")
    return None


checks = [
    (value("cllm:num_requests_running"), 3), (value("cllm:num_requests_waiting"), 2),
    (value("cllm:kv_cache_usage_perc"), 0.25), (value("cllm:prefix_cache_queries_total"), 100),
    (value("cllm:prefix_cache_hits_total"), 40), (value("cllm:prompt_tokens_total"), 123),
    (value("cllm:generation_tokens_total"), 45), (value("cllm:num_preemptions_total"), 1),
    (value("cllm:request_success_total", finished_reason="stop"), 2),
    (value("cllm:request_success_total", finished_reason="length"), 1),
    (value("cllm:request_success_total", finished_reason="abort"), 0),
    (value("cllm:time_to_first_token_seconds_bucket", le="0.001"), 0),
    (value("cllm:time_to_first_token_seconds_bucket", le="0.005"), 2),
    (value("cllm:time_to_first_token_seconds_bucket", le="2560.0"), 2),
    (value("cllm:time_to_first_token_seconds_bucket", le="+Inf"), 3),
    (value("cllm:time_to_first_token_seconds_count"), 3),
    (value("cllm:time_to_first_token_seconds_sum"), 3000.008),
    (value("cllm:e2e_request_latency_seconds_bucket", le="1.0"), 0),
    (value("cllm:e2e_request_latency_seconds_bucket", le="1.5"), 1),
    (value("cllm:time_per_output_token_seconds_count"), 0),
]
for i, (got, want) in enumerate(checks):
    if got is None or abs(got - want) > 1e-9:
        errors.append(f"check {i}: got {got}, want {want}")

# buckets cumulative and ending with +Inf == _count
for name in ("cllm:time_to_first_token_seconds", "cllm:time_per_output_token_seconds",
             "cllm:e2e_request_latency_seconds"):
    buckets = [s for s in fams[name].samples if s.name.endswith("_bucket")]
    les = [float(s.labels["le"]) for s in buckets]
    if les != sorted(les) or les[-1] != float("inf"):
        errors.append(f"{name}: bucket bounds not increasing to +Inf: {les}")
    vals = [s.value for s in buckets]
    if vals != sorted(vals):
        errors.append(f"{name}: buckets not cumulative: {vals}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"prometheus_client parsed {len(fams)} families; all checks passed")

"""examples/monitoring: every metric the Grafana dashboard queries (panels and
template variables) is exported by a running server's /metrics, and the
Prometheus scrape config points at /metrics."""
import json
import os
import re

import yaml

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "monitoring")


def queried_metrics(dash):
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v.get("type") == "query"]
    return exprs, {m for e in exprs for m in re.findall(r"cllm:[A-Za-z0-9_:]+", e)}


def test_dashboard_queries_only_exported_metrics(server):
    dash = json.load(open(os.path.join(EXAMPLES, "grafana-dashboard.json")))
    exprs, names = queried_metrics(dash)
    assert len(dash["panels"]) >= 8 and len(names) >= 12, names
    server.request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 2})  # histograms have samples
    st, _, body = server.request("GET", "/metrics")
    assert st == 200
    exported = {line.split("{")[0].split(" ")[0] for line in body.decode().splitlines() if line and line[0] != "#"}
    missing = sorted(names - exported)
    assert not missing, f"queried by the dashboard but not exported: {missing}"
    for e in exprs:  # every panel selects the dashboard's model
        assert "$model_name" in e or e.startswith("label_values"), e


def test_prometheus_scrape_config():
    cfg = yaml.safe_load(open(os.path.join(EXAMPLES, "prometheus.yml")))
    job = cfg["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]

"""cllm bench latency --batch-size sweep and cllm bench throughput on
stories260K (CPU): argument errors give a one-line message and exit 2,
tiny runs exit 0 with well-formed JSON whose figures are positive and
consistent (tokens/s = N / step time; requests and tokens add up to what
was asked; the profile split sums to the step time).
usage: test_bench_cli.py CLLM MODEL_DIR WORK_DIR"""
import json
import os, re, subprocess, sys

cllm, model, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
fails = 0


def check(cond, msg):
    global fails
    if not cond:
        print("FAIL:", msg)
        fails += 1


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([cllm, "bench", *args], capture_output=True, text=True, timeout=300, env=e)


# bad arguments: exit 2, message names the flag, never a crash
bad = [
    (["latency", "--model", model, "--batch-size", "1,,4"], "--batch-size"),
    (["latency", "--model", model, "--batch-size", "0"], "--batch-size"),
    (["latency", "--model", model, "--batch-size", "2,x"], "--batch-size"),
    (["latency", "--model", model, "--batch-size", ",".join(["1"] * 65)], "--batch-size"),
    (["latency", "--batch-size", "2"], "--model"),
    (["throughput", "--model", model, "--num-prompts", "0"], "--num-prompts"),
    (["throughput", "--model", model, "--random-range-ratio", "1.5"], "--random-range-ratio"),
    (["throughput", "--model", model, "--gpu-memory-utilization", "2"], "--gpu-memory-utilization"),
    (["throughput", "--model", model, "--max-num-seqs"], "--max-num-seqs"),
    (["throughput", "--model", model, "--bogus", "1"], "--bogus"),
    (["throughput", "--num-prompts", "3"], "--model"),
    (["nosuch"], "latency"),
]
for args, word in bad:
    r = run(*args)
    check(r.returncode == 2 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          f"{args}: rc {r.returncode}, stderr {r.stderr!r}")
# a request longer than the model: exit 1 with a message, no crash
r = run("throughput", "--model", model, "--num-prompts", "2", "--input-len", "600", "--output-len", "4")
check(r.returncode == 1 and "maximum context length" in r.stderr, f"too long: rc {r.returncode} {r.stderr!r}")
r = run("throughput", "--help")
check(r.returncode == 0 and "--num-prompts" in r.stdout, "throughput --help")

# latency sweep
js = os.path.join(work, "lat.json")
r = run("latency", "--model", model, "--batch-size", "1,3,8", "--input-len", "24", "--output-len", "6",
        "--num-iters", "2", "--num-iters-warmup", "1", "--output-json", js)
check(r.returncode == 0, f"latency sweep rc {r.returncode}: {r.stderr}")
if r.returncode == 0:
    j = json.load(open(js))
    rows = j["results"]
    check([x["batch_size"] for x in rows] == [1, 3, 8], f"batch sizes {rows}")
    check(len([l for l in r.stdout.splitlines() if l.split() and l.split()[0] in ("1", "3", "8")]) == 3,
          "one printed row per batch size")
    for x in rows:
        for k in ("median_step_ms", "tokens_per_s", "floor_ms", "ceiling_tokens_per_s", "ratio", "bytes_per_step",
                  "flops_per_step"):
            check(x[k] > 0, f"batch {x['batch_size']}: {k} = {x[k]}")
        check(abs(x["tokens_per_s"] - x["batch_size"] * 1e3 / x["median_step_ms"]) < 1e-6 * x["tokens_per_s"],
              "tokens/s = N / step")
        check(abs(x["ceiling_tokens_per_s"] - x["batch_size"] * 1e3 / x["floor_ms"]) < 1e-6 * x["ceiling_tokens_per_s"],
              "ceiling = N / floor")
    # KV bytes grow with the batch: bytes per step strictly increasing
    check(rows[0]["bytes_per_step"] < rows[1]["bytes_per_step"] < rows[2]["bytes_per_step"], "bytes per step grow")
    # --kv-cache-dtype fp8: the same sweep reads one byte per cached element instead of four (fp32 on the CPU)
    js8 = os.path.join(work, "lat8.json")
    r = run("latency", "--model", model, "--batch-size", "1,3,8", "--input-len", "24", "--output-len", "6",
            "--num-iters", "1", "--num-iters-warmup", "0", "--kv-cache-dtype", "fp8", "--output-json", js8)
    check(r.returncode == 0, f"latency sweep fp8 rc {r.returncode}: {r.stderr}")
    if r.returncode == 0:
        cfg = json.load(open(os.path.join(model, "config.json")))
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        kvh = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        for x, y in zip(rows, json.load(open(js8))["results"]):
            kv32 = x["batch_size"] * (24 + 7 / 2) * cfg["num_hidden_layers"] * 2 * kvh * hd * 4
            check(abs((x["bytes_per_step"] - y["bytes_per_step"]) - 0.75 * kv32) < 1e-6 * kv32,
                  f"fp8 KV bytes at batch {x['batch_size']}: {x['bytes_per_step']} vs {y['bytes_per_step']}")
# batch 1 alone keeps the single-sequence path (prefill figures)
r = run("latency", "--model", model, "--input-len", "16", "--output-len", "4", "--num-iters", "1")
check(r.returncode == 0 and "prefill (ms)" in r.stdout, f"batch-1 latency: {r.returncode} {r.stderr}")

# throughput, fixed and random lengths, with the profile split
for extra, env in ((["--profile"], {}), (["--random-range-ratio", "0.5"], {"CLLM_PROFILE": "1"}), ([], {})):
    js = os.path.join(work, "tp.json")
    r = run("throughput", "--model", model, "--num-prompts", "12", "--input-len", "20", "--output-len", "5",
            "--max-num-seqs", "4", "--max-num-batched-tokens", "32", "--output-json", js, *extra, env=env)
    check(r.returncode == 0, f"throughput {extra} rc {r.returncode}: {r.stderr}")
    if r.returncode != 0:
        continue
    j = json.load(open(js))
    check(j["num_requests"] == 12, "num_requests")
    for k in ("elapsed_time", "requests_per_second", "tokens_per_second", "output_tokens_per_second", "ms_per_step"):
        check(j[k] > 0, f"{k} = {j[k]}")
    if "--random-range-ratio" not in extra:
        check(j["total_num_tokens"] == 12 * 25 and j["total_output_tokens"] == 12 * 5, f"token counts {j}")
    check(abs(j["requests_per_second"] - 12 / j["elapsed_time"]) < 1e-6 * j["requests_per_second"], "requests/s")
    # max_num_seqs 4, 12 requests of 5 outputs: at least 3 waves of 5 decode steps
    check(j["num_steps"] >= 15, f"num_steps {j['num_steps']}")
    profiled = bool(extra or env)
    check(j["profiled"] == profiled, "profiled flag")
    if profiled:
        s = j["ms_per_step_split"]
        check(all(s[k] >= 0 for k in ("gemm", "attention", "other", "sample")) and s["gemm"] > 0 and s["attention"] > 0,
              f"split {s}")
        check(abs(sum(s.values()) - j["ms_per_step"]) < 1e-6 * j["ms_per_step"] + 1e-9, "split sums to the step")
        check("gemm" in r.stdout and "attention" in r.stdout, "split printed")
    else:
        check("ms_per_step_split" not in j, "split without profiling")

# throughput at tensor_parallel_size 2: rank 0's collectives per step, one logits all-gather per step (the
# vocabulary-parallel LM head) and, per layer, the all-reduces after o_proj and down_proj (+ the embedding's)
r = run("throughput", "--model", model, "--num-prompts", "4", "--input-len", "8", "--output-len", "4", "-tp", "2")
check(r.returncode == 0, f"throughput -tp 2 rc {r.returncode}: {r.stderr}")
m = re.search(r"comm per step, rank 0, group tp \(tcp, size 2\): all_reduce ([0-9.]+) calls.*; all_gather ([0-9.]+) calls",
              r.stdout)
check(m is not None, f"tp comm line: {r.stdout}")
if m:
    layers = json.load(open(os.path.join(model, "config.json")))["num_hidden_layers"]
    check(float(m.group(1)) == 2 * layers + 1 and float(m.group(2)) == 1.0, f"collectives per step: {m.group(0)}")

print("FAILED" if fails else "ok", fails)
sys.exit(1 if fails else 0)

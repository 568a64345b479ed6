"""cllm bench comm on CPU: self-launched world of 2 with --check prints
nccl-tests' columns with no wrong elements and positive bandwidths, writes
matching JSON; every op runs; flag errors exit 2 with a one-line message
naming the flag.
usage: test_bench_comm.py CLLM"""
import json, os, subprocess, sys, tempfile

cllm = sys.argv[1]
fails = 0


def check(cond, msg):
    global fails
    if not cond:
        print("FAIL:", msg)
        fails += 1


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLLM_DIST_", "OMPI_", "SLURM_"))}
    return subprocess.run([cllm, "bench", "comm", *args], capture_output=True, text=True, timeout=120, env=env)


with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "comm.json")
    r = run("--device", "cpu", "--world-size", "2", "--check", "--max-bytes", "1M", "--iters", "3",
            "--warmup-iters", "1", "--output-json", out)
    check(r.returncode == 0, f"world 2: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
    lines = r.stdout.splitlines()
    head = [l for l in lines if l.startswith("#") and "size" in l and "busbw" in l]
    check(len(head) == 1 and head[0].split()[1:] == ["size", "count", "type", "redop", "root", "time", "algbw",
                                                     "busbw", "#wrong"], f"header: {head}")
    rows = [l.split() for l in lines if l and not l.startswith("#")]
    sizes = [int(x[0]) for x in rows]
    check(sizes == [8 << i for i in range(18)], f"sizes 8 B .. 1 MiB doubling: {sizes}")
    for x in rows:
        check(len(x) == 9, f"row columns: {x}")
        size, count, typ, redop, root, t, algbw, busbw, wrong = x
        check(int(count) * 4 == int(size) and typ == "float" and redop == "sum" and root == "-1", f"row: {x}")
        check(float(t) > 0 and wrong == "0", f"time/wrong: {x}")
        check(abs(float(busbw) - float(algbw)) <= 0.011 + 0.01 * float(algbw), f"world 2 busbw = algbw: {x}")
    check(any("Avg bus bandwidth" in l for l in lines), "average line")
    j = json.load(open(out))
    check(j["world_size"] == 2 and j["results"][0]["op"] == "all_reduce" and len(j["results"][0]["rows"]) == 18,
          f"json: {str(j)[:200]}")
    check(all(row["wrong"] == 0 for row in j["results"][0]["rows"]), "json wrong counts")

    r = run("--world-size", "3", "--op", "all", "--dtype", "bfloat16", "--check", "--max-bytes", "256K",
            "--iters", "2", "--warmup-iters", "0")
    check(r.returncode == 0, f"--op all world 3: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
    for op in ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"):
        check(f"# cllm bench comm: {op}, world 3" in r.stdout, f"{op} table missing")
    check(r.stdout.count("Out of bounds values : 0 OK") == 5, "a --check found wrong values")

for args, word in [(["--op", "gather"], "--op"), (["--dtype", "int8"], "--dtype"), (["--max-bytes", "12Q"], "--max-bytes"),
                   (["--world-size", "0"], "--world-size"), (["--min-bytes", "2M", "--max-bytes", "1M"], "--min-bytes"),
                   (["--bogus", "1"], "--bogus")]:
    r = run(*args)
    check(r.returncode == 2 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          f"{args}: rc {r.returncode} {r.stderr!r}")
r = run("--help")
check(r.returncode == 0 and "--max-bytes" in r.stdout, "--help")
r = run("--device", "cuda", "--world-size", "1", "--max-bytes", "64")
check(r.returncode in (0, 1), f"cuda without a GPU must fail cleanly: rc {r.returncode} {r.stderr!r}")
print("test_bench_comm:", "FAILED" if fails else "ok")
sys.exit(1 if fails else 0)

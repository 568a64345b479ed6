"""Two hosts without Slurm: two network namespaces joined by a veth pair,
each with its own IP address, rank(s) of one `cllm generate` in each, the
rendezvous at host A's address (torchrun- or srun-style variables, as on two
real machines). Pipeline and tensor parallelism across the "hosts" give the
one-rank greedy text; a firewall that drops the rendezvous port, a wrong
MASTER_ADDR, or a firewall that lets only MASTER_PORT and
CLLM_DIST_PORT_RANGE through (without the variable) end every rank within
--dist-timeout (CLLM_DIST_TIMEOUT: a worker's wait for rank 0) with an
error naming what to check. Needs root (CI is root);
fails, never skips, when namespaces or nft are not available."""
import os
import shutil
import subprocess

import pytest

BIN = os.environ.get("CLLM_BIN", "build/cllm")
MODEL_DIR = os.environ.get("CLLM_MODEL_DIR", "models/stories260K")
PROMPT = "Once upon a time, there was a little girl"
IP_A, IP_B = "10.232.0.1", "10.232.0.2"
MASTER_PORT = 29555
PORT_RANGE = (29600, 29609)


def sh(*args, input=None):
    r = subprocess.run(args, capture_output=True, text=True, input=input)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}"
    return r.stdout


def remove_stale_namespaces():
    """Namespaces of a run that was killed (its pid is gone): end their processes, delete them."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for ns in names:
        if ns.startswith("cllm-mh") and ns[7:-2].isdigit() and not os.path.exists(f"/proc/{ns[7:-2]}"):
            Hosts.end(ns)


class Hosts:
    """Namespaces A and B, IP_A and IP_B on a veth pair."""

    def __init__(self):
        remove_stale_namespaces()
        tag = os.getpid()
        self.a, self.b = f"cllm-mh{tag}-a", f"cllm-mh{tag}-b"
        assert os.geteuid() == 0, "this test needs root (network namespaces); CI runs as root"
        assert shutil.which("ip"), "ip (iproute2) not found: tools/install_deps.sh installs it"
        assert shutil.which("nft"), "nft not found: tools/install_deps.sh installs nftables"
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "link", "add", f"cmh{tag}a", "type", "veth", "peer", "name", f"cmh{tag}b")
        for ns, dev, ip in ((self.a, f"cmh{tag}a", IP_A), (self.b, f"cmh{tag}b", IP_B)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.dev_a = f"cmh{tag}a"

    def firewall(self, open_ports):
        """Host A drops TCP from the link to any port but open_ports (nft set syntax)."""
        sh("ip", "netns", "exec", self.a, "nft", "-f", "-", input=f"""
table inet cllm_test {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname "{self.dev_a}" tcp dport != {{ {open_ports} }} drop
  }}
}}
""")

    def open_all(self):
        subprocess.run(["ip", "netns", "exec", self.a, "nft", "delete", "table", "inet", "cllm_test"],
                       capture_output=True)

    @staticmethod
    def end(ns):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:  # processes this test started in its namespace
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def close(self):
        for ns in (self.a, self.b):
            self.end(ns)


@pytest.fixture(scope="module")
def hosts():
    h = Hosts()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def reference():
    r = subprocess.run([BIN, "generate", "--model", MODEL_DIR, "--prompt", PROMPT, "--max-tokens", "32",
                        "--temperature", "0", "--num-threads", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def rank_env(style, rank, world, per_host, master_addr, secret, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLLM_DIST_", "OMPI_", "SLURM_", "PMI_")) and k not in ("RANK", "WORLD_SIZE")}
    env.update({"MASTER_ADDR": master_addr, "MASTER_PORT": str(MASTER_PORT), "CLLM_DIST_SECRET": secret})
    node, local = divmod(rank, per_host)
    if style == "srun":
        env.update({"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(local), "SLURM_NODEID": str(node),
                    "SLURM_STEP_NUM_TASKS": str(world), "SLURM_NTASKS": str(world),
                    "SLURM_STEP_TASKS_PER_NODE": f"{per_host}(x{world // per_host})", "SLURM_JOB_ID": "7"})
    else:
        env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local),
                    "LOCAL_WORLD_SIZE": str(per_host)})
    env.update(extra or {})
    return env


def launch(hosts, style, layout, per_host=1, master_addr=IP_A, timeout_s=30, extra_env=None, wait=120):
    """One `cllm generate` per rank: ranks [0, per_host) on host A, the rest on B. Returns the
    CompletedProcess-like (returncode, stdout, stderr) per rank."""
    world = 1
    for flag, n in zip(layout[::2], layout[1::2]):
        world *= int(n) if flag in ("-tp", "-pp") else 1
    secret = os.urandom(32).hex()
    procs = []
    for rank in range(world):
        ns = hosts.a if rank < per_host else hosts.b
        env = rank_env(style, rank, world, per_host, master_addr, secret, extra_env)
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, BIN, "generate", "--model", MODEL_DIR, "--prompt", PROMPT, "--max-tokens",
             "32", "--temperature", "0", "--num-threads", "1", "--dist-timeout", str(timeout_s), *layout],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"ranks still running after {wait} s (layout {layout})")
        out.append((p.returncode, o, e))
    for rank, (_, _, e) in enumerate(out):  # the sanitizer build: error paths must not leak or misbehave either
        assert "Sanitizer" not in e, f"rank {rank}:\n{e}"
    return out


def assert_equal_to_one_rank(results, reference, launcher):
    for rank, (rc, o, e) in enumerate(results):
        assert rc == 0, f"rank {rank} exited {rc}:\n{e}"
    assert results[0][1] == reference, (results[0][1], reference)
    assert f"{len(results)} ranks ({launcher} launch" in results[0][2], results[0][2]


def test_pipeline_across_hosts_torchrun_style(hosts, reference):
    assert_equal_to_one_rank(launch(hosts, "env", ["-pp", "2"]), reference, "env")


def test_tensor_parallel_across_hosts_srun_style(hosts, reference):
    assert_equal_to_one_rank(launch(hosts, "srun", ["-tp", "2"]), reference, "srun")


def test_tp_in_host_pp_across_hosts_behind_a_firewall(hosts, reference):
    """Two ranks per host (TP inside a host, stages across). Host A opens only MASTER_PORT and
    CLLM_DIST_PORT_RANGE: with the variable the ranks' listeners stay inside it."""
    lo, hi = PORT_RANGE
    hosts.firewall(f"{MASTER_PORT}, {lo}-{hi}")
    try:
        res = launch(hosts, "srun", ["-tp", "2", "-pp", "2"], per_host=2,
                     extra_env={"CLLM_DIST_PORT_RANGE": f"{lo}-{hi}"})
    finally:
        hosts.open_all()
    assert_equal_to_one_rank(res, reference, "srun")


def test_firewall_without_port_range_names_the_fix(hosts):
    """Same firewall, no CLLM_DIST_PORT_RANGE: rank 1 (host A) listens on an ephemeral port that
    the firewall drops; the ranks of host B say which rank and port they could not reach."""
    lo, hi = PORT_RANGE
    hosts.firewall(f"{MASTER_PORT}, {lo}-{hi}")
    try:
        res = launch(hosts, "env", ["-tp", "2", "-pp", "2"], per_host=2, timeout_s=4, wait=60)
    finally:
        hosts.open_all()
    assert all(rc != 0 for rc, _, _ in res), [rc for rc, _, _ in res]
    # no CLLM_DIST_TIMEOUT: the workers end because rank 0 gave up (after --dist-timeout), not after 600 s
    assert "did not connect to this rank's listen port" in res[1][2], res[1][2]
    assert "not all of them connected to each other" in res[0][2], res[0][2]
    for rank in (2, 3):
        err = res[rank][2]
        assert f"could not connect to rank 1 at {IP_A}:" in err, err
        assert "CLLM_DIST_PORT_RANGE" in err and "firewall" in err, err


def test_firewall_closed_rendezvous_port(hosts):
    hosts.firewall("22")  # MASTER_PORT is dropped
    try:
        res = launch(hosts, "env", ["-pp", "2"], timeout_s=4, wait=60, extra_env={"CLLM_DIST_TIMEOUT": "4"})
    finally:
        hosts.open_all()
    (rc0, _, err0), (rc1, _, err1) = res
    assert rc0 != 0 and rc1 != 0
    assert f"could not connect to rank 0 at {IP_A}:{MASTER_PORT}" in err1, err1
    assert "timed out" in err1 and "MASTER_ADDR" in err1 and "firewall" in err1, err1
    assert "rank(s) 1 of 2 did not join" in err0 and "firewall" in err0, err0


def test_wrong_master_addr(hosts):
    """Rank 1 is given an address where no host answers: it names the address it tried."""
    wrong = "10.232.0.9"
    secret = os.urandom(32).hex()
    r0 = subprocess.Popen(["ip", "netns", "exec", hosts.a, BIN, "generate", "--model", MODEL_DIR, "--prompt", PROMPT,
                           "--num-threads", "1", "--dist-timeout", "4", "-tp", "2"],
                          env=rank_env("env", 0, 2, 1, IP_A, secret), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    r1 = subprocess.run(["ip", "netns", "exec", hosts.b, BIN, "generate", "--model", MODEL_DIR, "--prompt", PROMPT,
                         "--num-threads", "1", "--dist-timeout", "4", "-tp", "2"],
                        env=rank_env("env", 1, 2, 1, wrong, secret, {"CLLM_DIST_TIMEOUT": "4"}), capture_output=True,
                        text=True, timeout=60)
    _, err0 = r0.communicate(timeout=60)
    assert r1.returncode != 0 and r0.returncode != 0
    assert "Sanitizer" not in err0 + r1.stderr, err0 + r1.stderr
    assert f"could not connect to rank 0 at {wrong}:{MASTER_PORT}" in r1.stderr, r1.stderr
    assert "MASTER_ADDR" in r1.stderr, r1.stderr
    assert "rank(s) 1 of 2 did not join" in err0, err0


def _free_port_pair():
    """Two consecutive free ports (nothing listens there right now)."""
    import socket
    for base in range(29700, 29800, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", base))
                b.bind(("0.0.0.0", base + 1))
            return base
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports in 29700-29799")


def test_port_range_variable_self_launched(reference):
    """One host, self-launched: rank 0 and the worker take the range's first free ports; a range
    of one port leaves none for the worker; a malformed value is named."""
    lo = _free_port_pair()
    base = [BIN, "generate", "--model", MODEL_DIR, "--prompt", PROMPT, "--max-tokens", "32", "--temperature", "0",
            "--num-threads", "1", "--dist-timeout", "10", "-tp", "2"]
    ok = subprocess.run(base, env=dict(os.environ, CLLM_DIST_PORT_RANGE=f"{lo}-{lo + 1}"), capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout == reference, ok.stderr
    base[base.index("--dist-timeout") + 1] = "3"  # rank 0 waits that long for the worker that could not listen
    one = subprocess.run(base, env=dict(os.environ, CLLM_DIST_PORT_RANGE=f"{lo}-{lo}"), capture_output=True,
                         text=True, timeout=60)
    assert one.returncode != 0
    assert f"no free port in CLLM_DIST_PORT_RANGE={lo}-{lo}" in one.stderr and "widen the range" in one.stderr, \
        one.stderr
    bad = subprocess.run(base, env=dict(os.environ, CLLM_DIST_PORT_RANGE="29500:29599"), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "CLLM_DIST_PORT_RANGE='29500:29599' must be LO-HI" in bad.stderr, bad.stderr

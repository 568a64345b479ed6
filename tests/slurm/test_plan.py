"""`cllm serve [NAME] --dry-run` prints the launch plan after the resolved
command: sizes, nodes and GPUs, and the sbatch / srun / mpirun lines (the
scripts in scripts/slurm/ parse the `# plan:` line; tools/test_slurm.sh
submits the sbatch lines to a real Slurm)."""
import os
import signal
import subprocess

BIN = os.environ.get("CLLM_BIN", "build/cllm")
MODEL_DIR = os.environ.get("CLLM_MODEL_DIR", "models/stories260K")
REGISTRY = os.environ.get("CLLM_SHIPPED_REGISTRY", "configs/models.yaml")


def dry_run(*args, registry=REGISTRY):
    r = subprocess.run([BIN, "serve", *args, "--registry", str(registry), "--dry-run"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("cllm serve --model "), lines
    plan = {}
    for ln in lines[1:]:
        assert ln.startswith("# "), ln
        key, _, rest = ln[2:].partition(":")
        plan.setdefault(key, rest.strip())
    plan["command"], plan["raw"] = lines[0], r.stdout
    return plan


def fields(plan):
    return dict(kv.split("=") for kv in plan["plan"].split())


def test_multi_node_deployment_of_the_shipped_registry():
    p = dry_run("llama3-405b-pp2")
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2" in p["command"]
    assert fields(p) == {"world_size": "16", "tensor_parallel_size": "8", "pipeline_parallel_size": "2",
                         "data_parallel_size": "1", "nodes": "2", "ranks_per_node": "8", "gpus_per_node": "8",
                         "gpus": "16", "device": "cuda"}
    assert p["sbatch"] == ("sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 scripts/slurm/multi-node.sbatch "
                           f"llama3-405b-pp2 --registry {REGISTRY}")
    assert p["srun"].startswith("srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 --kill-on-bad-exit=1 "
                                f"cllm serve llama3-405b-pp2 --registry {REGISTRY} --host 0.0.0.0   # with "
                                "MASTER_ADDR=<first node> MASTER_PORT=<free port> CLLM_DIST_SECRET="), p["srun"]
    assert p["mpirun"].startswith("mpirun -np 16 --map-by ppr:8:node --hostfile HOSTS cllm serve llama3-405b-pp2 "), \
        p["mpirun"]
    assert "stage k on node k (ranks k*8 .. k*8+7)" in p["layout"]
    assert "or on one node" not in p["raw"]  # 16 GPUs: no one-node alternative offered


def test_one_gpu_and_one_node():
    p = dry_run("llama3-8b")
    assert fields(p)["world_size"] == "1" and fields(p)["gpus"] == "1"
    assert p["sbatch"] == f"sbatch scripts/slurm/single-gpu.sbatch llama3-8b --registry {REGISTRY}"
    assert "srun" not in p and "mpirun" not in p  # one rank needs no launcher
    p = dry_run("llama3-70b-tp4", "--port", "9000")
    assert fields(p)["nodes"] == "1" and fields(p)["gpus_per_node"] == "4"
    assert p["sbatch"] == f"sbatch --gpus-per-node=4 scripts/slurm/single-node.sbatch llama3-70b-tp4 --port 9000 " \
                          f"--registry {REGISTRY}"
    assert p["mpirun"] == f"mpirun -np 4 cllm serve llama3-70b-tp4 --port 9000 --registry {REGISTRY} --host 0.0.0.0"


def test_flags_override_the_registry():
    p = dry_run("llama3-70b-tp4", "-tp", "2", "-pp", "2", "--host", "10.0.0.5")
    f = fields(p)
    assert (f["world_size"], f["nodes"], f["ranks_per_node"], f["gpus"]) == ("4", "2", "2", "4")
    assert "--host 10.0.0.5" in p["srun"] and "0.0.0.0" not in p["srun"]  # the given host is kept
    assert "-tp 2 -pp 2" in p["sbatch"] and p["sbatch"].startswith("sbatch --nodes=2 --ntasks-per-node=2 ")
    assert "# (or on one node with 4 GPUs: sbatch --gpus-per-node=4 scripts/slurm/single-node.sbatch" in p["raw"]
    p = dry_run("llama3-70b-tp4", "--device", "cpu")
    assert fields(p)["gpus"] == "0" and fields(p)["device"] == "cpu"
    assert "gpus" not in p["sbatch"] and "gpus" not in p["srun"]


def test_data_parallel_size_and_quoting(tmp_path):
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  rep:\n    model: {MODEL_DIR}\n    device: cuda\n    tensor-parallel-size: 2\n"
                   f"    data-parallel-size: 3\n")
    p = dry_run("rep", "--served-model-name", "my model's", registry=reg)
    f = fields(p)
    assert (f["data_parallel_size"], f["world_size"], f["gpus"]) == ("3", "2", "6")
    assert p["data parallel"].startswith("3 replicas of this layout (6 ranks, as many GPUs in all)")
    assert "--served-model-name 'my model'\\''s'" in p["srun"], p["srun"]


def test_without_a_registry_name():
    r = subprocess.run([BIN, "serve", "--model", MODEL_DIR, "-pp", "2", "--dry-run"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "# sbatch:" not in r.stdout  # the scripts take a registry NAME
    assert f"cllm serve --model {MODEL_DIR} -pp 2 --host 0.0.0.0" in r.stdout


def test_serving_a_data_parallel_deployment_serves_one_replica(tmp_path):
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  rep:\n    model: {MODEL_DIR}\n    device: cpu\n    data-parallel-size: 2\n")
    p = subprocess.Popen([BIN, "serve", "rep", "--registry", str(reg), "--port", "0", "--num-threads", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in p.stderr:
            seen.append(line)
            if "listening on" in line:
                break
        assert any("data-parallel-size 2; this process serves one replica" in ln for ln in seen), seen
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)

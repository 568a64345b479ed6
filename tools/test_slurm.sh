#!/usr/bin/env bash
# The Slurm scripts (scripts/slurm/) end to end on this machine, CPU backend.
# Installs Debian's slurmctld, slurmd and munge and starts a two-node Slurm
# cluster whose nodes are two network namespaces joined by a veth pair (each
# slurmd in its own namespace, with its own IP address and host name, so no
# --enable-multiple-slurmd build is needed; the nodes declare 16 CPUs and 4
# placeholder GPUs each). Then:
#   - multi-node.sbatch on too few nodes fails at once, naming the fix;
#   - `srun cllm bench comm --check` across the two nodes passes;
#   - single-gpu, single-node and multi-node.sbatch, each submitted with the
#     sbatch line `cllm serve NAME --dry-run` prints (one deployment on the
#     CPU, two on "GPUs", run on the CPU backend by CLLM_DEVICE=cpu), serve
#     the bundled stories260K and answer a greedy completion exactly as
#     `cllm generate` does; the multi-node job has two ranks on each node and
#     all four ranks in /metrics; scancel stops each job gracefully (rank 0
#     drains, no rank killed by the SIGTERM, no sanitizer report) and leaves
#     no process behind.
# Everything it starts runs in its namespaces and a temporary directory,
# removed on exit. Needs root. About 15-20 s once the packages are installed.
#
#   tools/test_slurm.sh [path/to/cllm]        # default: build/cllm (CLLM_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLLM=$(realpath "${1:-${CLLM_BIN:-build/cllm}}")
MODEL=$ROOT/models/stories260K
PROMPT="Once upon a time, there was a little girl"
fail() { echo "test_slurm: FAIL: $*" >&2; exit 1; }
say() { echo "test_slurm: $*"; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, slurmd, munged)"
[ -x "$CLLM" ] || fail "no cllm binary at $CLLM (build first: tools/build.sh)"
for c in ip nsenter unshare; do command -v $c >/dev/null || fail "needs $c (iproute2, util-linux)"; done

# ---- packages: Debian's Slurm and MUNGE
missing=""
for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# ---- cleanup (runs on every exit)
T=$(mktemp -d /tmp/cllm-slurm.XXXXXX)
ID=$$
NS1=cllm-slurm$ID-1 NS2=cllm-slurm$ID-2 IP1=10.231.0.1 IP2=10.231.0.2
DAEMONS=()
export SLURM_CONF=$T/slurm.conf
in_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" "$@"; }
cleanup() {
  local rc=$?
  set +e
  [ -S "$T/munge.sock" ] && in_ns "$NS1" scancel --quiet --user=root 2>/dev/null
  for pid in "${DAEMONS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 1
  for ns in "$NS1" "$NS2"; do # whatever is left in our namespaces is ours: slurmstepd, job processes
    [ -e /run/netns/"$ns" ] || continue
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
  done
  [ -f "$T/munged.pid" ] && kill "$(cat "$T/munged.pid")" 2>/dev/null
  sleep 0.5
  for ns in "$NS1" "$NS2"; do [ -e /run/netns/"$ns" ] && ip netns del "$ns"; done
  if [ $rc != 0 ]; then
    for f in "$T"/slurmctld.log "$T"/slurmd-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# namespaces left by a run that was killed (its pid is gone): end what runs in them, remove them
for ns in $(ip netns list | sed -n 's/^\(cllm-slurm[0-9]*-[12]\).*/\1/p'); do
  pid=${ns#cllm-slurm}
  [ -d /proc/"${pid%-*}" ] && continue
  for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
done

# ---- two "hosts": network namespaces joined by a veth pair
t0=$(date +%s)
ip netns add "$NS1"
ip netns add "$NS2"
ip link add "csl${ID}a" type veth peer name "csl${ID}b"
ip link set "csl${ID}a" netns "$NS1"
ip link set "csl${ID}b" netns "$NS2"
ip -n "$NS1" addr add $IP1/24 dev "csl${ID}a"
ip -n "$NS2" addr add $IP2/24 dev "csl${ID}b"
for ns in "$NS1" "$NS2"; do ip -n "$ns" link set lo up; done
ip -n "$NS1" link set "csl${ID}a" up
ip -n "$NS2" link set "csl${ID}b" up
printf '127.0.0.1 localhost\n%s node1\n%s node2\n' $IP1 $IP2 >"$T/hosts"

# ---- MUNGE with its own key and socket
head -c 1024 /dev/urandom >"$T/munge.key"
chmod 400 "$T/munge.key"
munged --force --socket="$T/munge.sock" --key-file="$T/munge.key" --log-file="$T/munged.log" \
  --pid-file="$T/munged.pid" --seed-file="$T/munged.seed"

# ---- Slurm: controller and node1 in NS1, node2 in NS2; 4 placeholder GPUs per node
mkdir -p "$T/state" "$T/spool/node1" "$T/spool/node2" "$T/gpu"
for i in 0 1 2 3; do mknod "$T/gpu/fake$i" c 1 3; done # /dev/null's numbers: nothing opens them
cat >"$T/slurm.conf" <<EOF
ClusterName=cllmtest
SlurmctldHost=node1($IP1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd-%n.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=5
GresTypes=gpu
NodeName=node1 NodeAddr=$IP1 CPUs=16 Gres=gpu:4 State=UNKNOWN
NodeName=node2 NodeAddr=$IP2 CPUs=16 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=30 State=UP
EOF
echo "Name=gpu File=$T/gpu/fake[0-3]" >"$T/gres.conf"
# Each daemon gets its namespace's network, its own host name and a private mount namespace
# with the nodes in /etc/hosts; slurmd's cgroup/v1 plugin wants a cgroup file system at
# /sys/fs/cgroup/systemd: a named hierarchy of its own (nothing is constrained: proctrack/linuxproc).
daemon() { # NS NODE COMMAND...
  local ns=$1 node=$2
  shift 2
  in_ns "$ns" unshare --uts --mount --propagation private sh -c '
    mount --bind "$1/hosts" /etc/hosts && hostname "$2" &&
    mount -t tmpfs cllm /sys/fs/cgroup && mkdir /sys/fs/cgroup/systemd &&
    mount -t cgroup -o none,name=cllm-slurm cgroup /sys/fs/cgroup/systemd && shift 2 && exec "$@"' \
    sh "$T" "$node" "$@" >>"$T/$node.daemons.out" 2>&1 &
  DAEMONS+=($!)
}
daemon "$NS1" node1 slurmctld -D -f "$T/slurm.conf"
daemon "$NS1" node1 slurmd -D -N node1 -f "$T/slurm.conf"
daemon "$NS2" node2 slurmd -D -N node2 -f "$T/slurm.conf"
for _ in $(seq 100); do
  [ "$(in_ns "$NS1" sinfo -h -o '%T %D' 2>/dev/null)" = "idle 2" ] && break
  sleep 0.2
done
[ "$(in_ns "$NS1" sinfo -h -o '%T %D' 2>/dev/null)" = "idle 2" ] ||
  { cat "$T"/*.daemons.out; in_ns "$NS1" sinfo; fail "the two slurmd did not register as idle"; }
say "cluster up in $(($(date +%s) - t0)) s: $(in_ns "$NS1" sinfo -h -o '%P %D %T %N %G')"

# ---- the deployments: the registry the scripts read
cat >"$T/models.yaml" <<EOF
models:
  stories-1:
    model: $MODEL
    device: cpu
    max-model-len: 256
    max-num-seqs: 4
  stories-tp2:
    model: $MODEL
    device: cuda
    tensor-parallel-size: 2
    max-model-len: 256
    max-num-seqs: 4
  stories-tp2-pp2:
    model: $MODEL
    device: cuda
    tensor-parallel-size: 2
    pipeline-parallel-size: 2
    max-model-len: 256
    max-num-seqs: 4
EOF
export CLLM_REGISTRY=$T/models.yaml CLLM_BIN=$CLLM
REF=$("$CLLM" generate --model "$MODEL" --prompt "$PROMPT" --max-tokens 32 --temperature 0 --num-threads 1 \
  2>/dev/null) || fail "cllm generate failed"

# cllm processes in a namespace (by the executable's name)
count_cllm() { local n=0 pid; for pid in $(ip netns pids "$1"); do
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = cllm ] && n=$((n + 1)); done; echo $n; }

# run_job NAME PORT SCRIPT WORLD: submit the dry-run's sbatch line, check the completion, cancel.
run_job() {
  local name=$1 port=$2 script=$3 world=$4 line job out node ip t1
  t1=$(date +%s)
  line=$("$CLLM" serve "$name" --dry-run | sed -n 's/^# sbatch: //p')
  [[ "$line" == sbatch*"scripts/slurm/$script $name" ]] || fail "$name: unexpected sbatch line '$line'"
  read -ra cmd <<<"$line"
  out=$T/$name.out
  job=$(CLLM_DEVICE=cpu CLLM_PORT=$port in_ns "$NS1" "${cmd[0]}" --parsable --output="$out" "${cmd[@]:1}" \
    --num-threads 1 --dist-timeout 30) || fail "$name: sbatch failed: $line"
  say "$name: job $job: $line"
  for _ in $(seq 300); do
    grep -q "listening on http://" "$out" 2>/dev/null && break
    in_ns "$NS1" squeue -h -j "$job" 2>/dev/null | grep -q . || { cat "$out"; fail "$name: job $job ended early"; }
    sleep 0.2
  done
  grep -q "listening on http://" "$out" || { cat "$out"; fail "$name: job $job never started serving"; }
  node=$(in_ns "$NS1" scontrol show hostnames "$(in_ns "$NS1" squeue -h -j "$job" -o %N)" | head -n1) # rank 0's
  case "$node" in node1) ip=$IP1 ;; node2) ip=$IP2 ;; *) fail "$name: unexpected first node '$node'" ;; esac
  grep -q "cllm: job $job serving $name" "$out" || { cat "$out"; fail "$name: no serving line in the job log"; }
  grep -q "^# plan: world_size=" "$out" || fail "$name: the job log lacks the plan"
  in_ns "$NS1" python3 - "$ip" "$port" "$PROMPT" "$REF" "$name" "$world" <<'EOF' || { cat "$out"; fail "$name: check failed"; }
import json, sys, time, urllib.request
ip, port, prompt, ref, name, world = sys.argv[1:]
base = f"http://{ip}:{port}"
t0 = time.time()
while True:
    try:
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.time() - t0 > 60:
        sys.exit(f"{name}: /health never answered 200")
    time.sleep(0.2)
body = json.dumps({"model": name, "prompt": prompt, "max_tokens": 32, "temperature": 0}).encode()
req = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    text = json.load(r)["choices"][0]["text"]
if text != ref.rstrip("\n"):
    sys.exit(f"{name}: served {text!r}\n  cllm generate gave {ref!r}")
with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
    metrics = r.read().decode()
ranks = sorted({int(l.split('rank="')[1].split('"')[0]) for l in metrics.splitlines()
                if l.startswith("cllm:dist_collective_calls_total{")})
if int(world) > 1 and ranks != list(range(int(world))):
    sys.exit(f"{name}: /metrics has collective statistics of ranks {ranks}, expected 0..{int(world) - 1}")
print(f"{name}: the completion equals cllm generate's; ranks in /metrics: {ranks or 'none (one rank)'}")
EOF
  if [ "$script" = multi-node.sbatch ]; then
    [ "$(count_cllm "$NS1")" = 2 ] && [ "$(count_cllm "$NS2")" = 2 ] ||
      fail "$name: expected 2 cllm ranks on each node, found $(count_cllm "$NS1") on node1, $(count_cllm "$NS2") on node2"
    grep -q "4 ranks (srun launch" "$out" || { cat "$out"; fail "$name: rank 0 did not report a 4-rank srun launch"; }
  fi
  in_ns "$NS1" scancel "$job"
  for _ in $(seq 150); do
    in_ns "$NS1" squeue -h -j "$job" 2>/dev/null | grep -q . || break
    sleep 0.2
  done
  in_ns "$NS1" squeue -h -j "$job" 2>/dev/null | grep -q . && fail "$name: job $job still queued 30 s after scancel"
  for _ in $(seq 50); do
    [ "$(count_cllm "$NS1")$(count_cllm "$NS2")" = 00 ] && break
    sleep 0.2
  done
  [ "$(count_cllm "$NS1")$(count_cllm "$NS2")" = 00 ] || fail "$name: cllm processes left after scancel"
  # scancel's SIGTERM reaches every rank: rank 0 shuts down gracefully, the workers wait for it
  grep -q "cllm serve: stopped" "$out" || { cat "$out"; fail "$name: rank 0 did not shut down gracefully"; }
  grep -q "Terminated" "$out" && { cat "$out"; fail "$name: a rank was killed by scancel's SIGTERM"; }
  grep -q "Sanitizer" "$out" && { cat "$out"; fail "$name: a sanitizer report in the job log"; }
  say "$name: ok in $(($(date +%s) - t1)) s (job $job on $node, cancelled, nothing left)"
}

# A job whose allocation does not fit the deployment fails at once, saying what to submit.
out=$T/bad.out
job=$(CLLM_DEVICE=cpu in_ns "$NS1" sbatch --parsable --wait --output="$out" --nodes=1 --ntasks-per-node=2 \
  scripts/slurm/multi-node.sbatch stories-tp2-pp2) && fail "multi-node.sbatch on 1 node should fail"
grep -q "multi-node.sbatch: deployment stories-tp2-pp2 needs 2 nodes x 2 ranks; the job has 1 nodes" "$out" ||
  { cat "$out"; fail "multi-node.sbatch on 1 node: no clear error"; }
say "multi-node.sbatch on too few nodes: refused with the sbatch line to use"

# The bandwidth check of docs/distributed.md between the two nodes: one rank per node under srun.
bench=$(MASTER_ADDR=node1 MASTER_PORT=29512 CLLM_DIST_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
  in_ns "$NS1" srun --nodes=2 --ntasks-per-node=1 "$CLLM" bench comm --device cpu --op all_reduce --max-bytes 4M \
  --check 2>&1) || { echo "$bench"; fail "srun cllm bench comm across the two nodes failed"; }
grep -q "all_reduce, world 2 (tcp on cpu, launcher srun)" <<<"$bench" && grep -q "Out of bounds values : 0 OK" <<<"$bench" ||
  { echo "$bench"; fail "srun cllm bench comm: unexpected output"; }
say "srun cllm bench comm across the nodes: $(grep "Avg bus bandwidth" <<<"$bench" | tr -s ' ')"

run_job stories-1 8001 single-gpu.sbatch 1
run_job stories-tp2 8002 single-node.sbatch 2
run_job stories-tp2-pp2 8003 multi-node.sbatch 4
say "all Slurm jobs passed in $(($(date +%s) - t0)) s"

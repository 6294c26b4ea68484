"""launch/slurm.sbatch across the nodes of a real Slurm cluster whose nodes are network
namespaces on this machine (launch/slurm_cluster.sh): training across 2 and 3 nodes with
identical weights on every worker, and the faults a cluster has: a node killed mid-epoch, a link
unplugged for longer than the peer timeout, a slow link. Each fault ends the job within a bound,
with one line naming it and exit 138; the job requeues itself and resumes to exactly epochs x
steps optimizer steps with one history row per epoch.

Root, Debian's slurm-wlm and munge, ip/nsenter/unshare/tc are needed (as for tests/test_slurm.py).
Every cluster gets names and a private 10.214.x.0/24 subnet no interface here uses, and a free
slurmctld port, so test runs beside each other (or beside a one-node cluster) do not meet; each
is taken down in a finally block, and the test fails if any namespace, link, hosts line or
process of it is left. Slurm here keeps its default SlurmdTimeout (300 s): the jobs end because
the app and the script end them, not because Slurm declared a node dead.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import FIXTURE_MNIST, PATIENT_PEERS, REPO, assert_workers_identical

pytestmark = pytest.mark.slow
SCRIPT = os.path.join(REPO, "launch", "slurm_cluster.sh")
SBATCH = os.path.join(REPO, "launch", "slurm.sbatch")
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
MNIST = ["--data_dir=" + FIXTURE_MNIST, "--noverify_checksums", "--noexport"]
# The fault tests: a peer is lost after PEER_S without heartbeats, srun ends the step WAIT_S
# after the first task exited, then gives the rest KillWait (10 s) + 2 s; where srun waits on
# for a task whose exit message was lost, launch/slurm.sbatch ends it GRACE_S after that.
PEER_S, WAIT_S, GRACE_S = 20, 20, 20
# ... so the job leaves its nodes this long after the fault at most; the slack covers the step
# in flight and a loaded machine (the slow group runs two clusters at once on 2 cores).
LEAVES_WITHIN_S = PEER_S + WAIT_S + GRACE_S + 2 + 45


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for third in random.sample(range(16, 250), 234):
        if f" 10.214.{third}." not in used:
            return f"10.214.{third}"
    raise RuntimeError("no free 10.214.x.0/24 subnet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """`launch/slurm_cluster.sh up N` with names of its own; `down` in close()."""

    def __init__(self, state_dir, nodes: int):
        self.state = str(state_dir)
        subnet = _free_subnet()
        self.prefix = "st" + subnet.rsplit(".", 1)[1]
        self.env = {**{k: v for k, v in os.environ.items()
                       if not k.startswith("SLURM_") and k != "TF_CONFIG"},
                    "SUITE_CLUSTER_SUBNET": subnet, "SUITE_CLUSTER_PREFIX": self.prefix,
                    "SUITE_CLUSTER_CTLD_PORT": str(_free_port()),
                    "PYTHON": sys.executable, "PYTHONPATH": REPO,
                    "TASK_EXIT_WAIT_S": str(WAIT_S), "STEP_END_GRACE_S": str(GRACE_S)}
        self.started = time.monotonic()
        up = self.script("up", str(nodes), self.state, timeout=600)
        self.up_s = time.monotonic() - self.started
        assert up.returncode == 0, (
            "could not start a Slurm cluster in network namespaces (root, slurm-wlm, munge, "
            f"iproute2 and util-linux are needed; launch/slurm_cluster.sh):\n{up.stderr[-3000:]}")
        self.env["SLURM_CONF"] = up.stdout.strip().rsplit("=", 1)[1]

    def script(self, *args, timeout=300):
        return subprocess.run(["bash", SCRIPT, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def do(self, *args):
        done = self.script(*args, self.state)
        assert done.returncode == 0, done.stderr

    def scontrol(self, *args) -> None:
        done = subprocess.run(["scontrol", *args], env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

    def node(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def leftovers(self) -> list[str]:
        """Whatever of this cluster is still there: namespaces, links, hosts lines, processes."""
        found = [f"netns {n}" for n in os.listdir("/var/run/netns")
                 if n.startswith(self.prefix + "-")] if os.path.isdir("/var/run/netns") else []
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found += [f"link {m}" for m in re.findall(rf"^\d+: ({self.prefix}-\S+?)[@:]", links,
                                                  re.M)]
        with open("/etc/hosts") as f:
            found += [f"hosts: {line.strip()}" for line in f if self.state in line]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.state in cmdline:
                found.append(f"process {pid}: {cmdline[:120]}")
        return found

    def close(self) -> list[str]:
        """Takes the cluster down; returns what is left of it (nothing, if all went well)."""
        down = self.script("down", self.state)
        left = self.leftovers()
        return left + ([f"down failed: {down.stderr[-2000:]}"] if down.returncode else [])

    # -- jobs -----------------------------------------------------------------------------
    def sbatch(self, out_dir, app_args, nodes: int, nodelist=(), **variables) -> str:
        where = [f"--nodelist={','.join(self.node(i) for i in nodelist)}"] if nodelist else []
        result = subprocess.run(
            ["sbatch", "--parsable", "--gres=none", f"--nodes={nodes}", "--ntasks-per-node=1",
             "--cpus-per-task=1", "--time=15", f"--output={out_dir}/job-%j.out", *where, SBATCH,
             *app_args], cwd=REPO, env={**self.env, **variables}, capture_output=True,
            text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().split(";")[0]

    def job(self, job: str) -> dict:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job], env=self.env,
                               capture_output=True, text=True, timeout=60).stdout
        return dict(re.findall(r"(\w+)=(\S*)", shown))

    def wait(self, job: str, until, what: str, timeout_s: float, out_dir=None) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            fields = self.job(job)
            if until(fields):
                return fields
            if time.monotonic() > deadline:
                subprocess.run(["scancel", job], env=self.env, timeout=60)
                text = output(out_dir, job)[-4000:] if out_dir else ""
                pytest.fail(f"job {job}: no {what} after {timeout_s} s "
                            f"({fields.get('JobState')}):\n{text}")
            time.sleep(1)

    def wait_end(self, job: str, timeout_s: float, out_dir=None) -> dict:
        return self.wait(job, lambda f: f.get("JobState") in FINAL, "end", timeout_s, out_dir)


@contextlib.contextmanager
def slurm_cluster(nodes: int):
    """A cluster whose state folder is a new one in /tmp: munged wants every folder above its
    socket searchable by all, which pytest's tmp_path (0700) is not."""
    state = tempfile.mkdtemp(prefix="suite-slurm-cluster-", dir="/tmp")
    os.chmod(state, 0o755)
    left = []
    try:
        cluster = SlurmCluster(state, nodes)
        try:
            yield cluster
        finally:
            left = cluster.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert not left, f"left behind by the cluster: {left}"


@pytest.fixture(scope="module")
def cluster3():
    with slurm_cluster(3) as cluster:
        yield cluster


def output(out_dir, job: str) -> str:
    try:
        with open(os.path.join(out_dir, f"job-{job}.out")) as f:
            return f.read()
    except OSError:
        return ""


def hosts_of(text: str) -> dict[str, str]:
    """Task rank -> the address its Runtime line names."""
    return dict(re.findall(r'^(\d+): Runtime: \{.*"address": "([^"]+)"', text, re.M))


def history_epochs(model_dir) -> list[str]:
    with open(os.path.join(model_dir, "history.csv")) as f:
        return [line.split(",")[0] for line in f.read().split()[1:]]


def iterations(model_dir) -> int:
    from suite.models.registry import load_keras_file

    model = load_keras_file(os.path.join(model_dir, "checkpoints", "last.keras"), compile=True)
    return int(model.optimizer.iterations.numpy())


def backup_epoch(model_dir) -> int:
    try:
        with open(os.path.join(model_dir, "backup", "state.json")) as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return -1


# -- training across nodes ------------------------------------------------------------------
def test_a_two_node_cluster_trains_one_model_and_leaves_nothing_behind(tmp_path):
    model_dir = tmp_path / "run"
    with slurm_cluster(2) as cluster:
        assert cluster.up_s < 120
        job = cluster.sbatch(tmp_path, [*MNIST, PATIENT_PEERS, f"--model_dir={model_dir}",
                                        "--epochs=2", "--steps_per_epoch=4", "--batch_size=20"],
                             nodes=2)
        fields = cluster.wait_end(job, 400, tmp_path)
        text = output(tmp_path, job)
        assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
        # Two tasks, one per node, each in its own namespace at its own address.
        assert hosts_of(text) == {"0": f"{cluster.node(1)}:8888", "1": f"{cluster.node(2)}:8888"}
        assert '"strategy": "CollectiveAllReduceStrategy", "replicas": 2' in text
        accuracies = re.findall(r"^\d: Test accuracy: (\S+)", text, re.M)
        assert len(accuracies) == 2 and len(set(accuracies)) == 1, text[-3000:]
    assert_workers_identical(model_dir)
    assert history_epochs(model_dir) == ["0", "1"] and iterations(model_dir) == 2 * 4


def test_three_nodes_train_the_resnet20_classifier_with_identical_weights(cluster3, tmp_path):
    """Another app than MNIST, over 3 nodes: CIFAR's ResNet-20 on the stripes fixture."""
    model_dir = tmp_path / "run"
    args = ["--flagfile=apps/flags/cifar_resnet20_smoke.flags", f"--model_dir={model_dir}",
            "--epochs=2", "--steps_per_epoch=2", "--batch_size=24", "--noexport", PATIENT_PEERS]
    job = cluster3.sbatch(tmp_path, args, nodes=3, SUITE_APP="apps.train_classifier")
    fields = cluster3.wait_end(job, 500, tmp_path)
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    assert sorted(hosts_of(text).values()) == [f"{cluster3.node(i)}:8888" for i in (1, 2, 3)]
    assert '"replicas": 3' in text
    assert_workers_identical(model_dir, workers=(1, 2))
    assert history_epochs(model_dir) == ["0", "1"] and iterations(model_dir) == 2 * 2


# -- faults ---------------------------------------------------------------------------------
# Epochs long enough (seconds, on a fast machine) that the fault lands inside the second one.
FAULT_EPOCHS, FAULT_STEPS = 3, 400


def _fault_job(cluster, tmp_path):
    """A 2-node MNIST job of FAULT_EPOCHS x FAULT_STEPS; returns (job, model_dir, node of
    task 1) once epoch 1 is backed up and epoch 2 under way."""
    model_dir = tmp_path / "run"
    job = cluster.sbatch(tmp_path, [*MNIST, f"--peer_timeout_s={PEER_S}",
                                    f"--model_dir={model_dir}", f"--epochs={FAULT_EPOCHS}",
                                    f"--steps_per_epoch={FAULT_STEPS}", "--batch_size=20"],
                         nodes=2)
    cluster.wait(job, lambda f: backup_epoch(model_dir) >= 1, "backup of epoch 1", 400,
                 tmp_path)
    time.sleep(1)  # some steps into epoch 2
    assert backup_epoch(model_dir) == 1, "epoch 2 ended before the fault: lengthen the epochs"
    second = hosts_of(output(tmp_path, job))["1"].split(":")[0]
    return job, model_dir, int(second.rsplit("n", 1)[1])


def _left_running(cluster, job: str, fault_at: float, tmp_path) -> float:
    """Seconds from the fault until the job stopped running (requeued)."""
    cluster.wait(job, lambda f: f.get("JobState") != "RUNNING" or f.get("Restarts") != "0",
                 "requeue", LEAVES_WITHIN_S + 60, tmp_path)
    return time.monotonic() - fault_at


def _assert_resumed_exactly(cluster, job, model_dir, tmp_path) -> str:
    fields = cluster.wait_end(job, 500, tmp_path)
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    assert int(fields["Restarts"]) >= 1
    assert (f"job {job}: lost a peer (a node or link failed) with the last backup intact "
            "(exit 138): requeueing (restart 1 of at most 20)") in text, text[-4000:]
    # Both workers resume from the end of epoch 1, the last backup, and finish exactly.
    for rank in (0, 1):
        assert re.search(rf"^{rank}: Resuming from the backup in \S+: epoch 2, step 0\.$", text,
                         re.M), text[-4000:]
    assert history_epochs(model_dir) == [str(e) for e in range(FAULT_EPOCHS)]
    assert iterations(model_dir) == FAULT_EPOCHS * FAULT_STEPS
    assert_workers_identical(model_dir)
    assert "Traceback" not in text
    return text


def _lost_peer_lines(text: str, rank: int) -> list[str]:
    return re.findall(rf"^{rank}: (worker-{rank} lost .*)$", text, re.M)


def test_a_node_that_dies_mid_epoch_ends_the_job_which_requeues_and_resumes(cluster3,
                                                                            tmp_path):
    job, model_dir, node = _fault_job(cluster3, tmp_path)
    killed_at = time.monotonic()
    cluster3.do("kill-node", str(node))  # every process of the node: slurmd, stepd, the worker
    # What a health check does (Slurm itself would only after SlurmdTimeout, 300 s): no new
    # work for the dead node, so the requeued job runs on the other two. Draining leaves the
    # running job alone: the fault, not Slurm, ends it. A node booted again within seconds is
    # not a case to test here: its slurmd's registration kills the requeued job (same id).
    cluster3.scontrol("update", f"NodeName={cluster3.node(node)}", "State=DRAIN",
                      "Reason=killed by the test")
    try:
        left_s = _left_running(cluster3, job, killed_at, tmp_path)
        assert left_s < LEAVES_WITHIN_S, f"the job ran on for {left_s:.0f} s after the node died"
        text = _assert_resumed_exactly(cluster3, job, model_dir, tmp_path)
    finally:
        cluster3.do("start-node", str(node))  # the node boots again, and takes work again
        cluster3.scontrol("update", f"NodeName={cluster3.node(node)}", "State=RESUME")
    assert not any(re.search(rf"^{rank}: Runtime: .*\"address\": \"{cluster3.node(node)}:",
                             text.split("restart 1:", 1)[1], re.M) for rank in (0, 1))
    (line,) = _lost_peer_lines(text, 0)
    assert line.startswith(f"worker-0 lost worker-1 ({cluster3.node(node)}:8888): ")
    assert f"the last backup, in {model_dir}/backup, is intact: the rerun resumes from it at " \
           "epoch 2, step 0. Run the same command again (exit 138: retryable)." in line
    assert re.search(r"^srun: error: \S+: task 0: Exited with exit code 138$", text, re.M)


def test_a_link_down_past_the_peer_timeout_ends_the_job_which_requeues_and_resumes(cluster3,
                                                                                   tmp_path):
    job, model_dir, node = _fault_job(cluster3, tmp_path)
    cut_at = time.monotonic()
    cluster3.do("link", str(node), "down")
    try:
        time.sleep(PEER_S + 10)  # past the peer timeout
    finally:
        cluster3.do("link", str(node), "up")
    left_s = _left_running(cluster3, job, cut_at, tmp_path)
    assert left_s < LEAVES_WITHIN_S, f"the job ran on for {left_s:.0f} s after the link went down"
    text = _assert_resumed_exactly(cluster3, job, model_dir, tmp_path)
    # Each side names the other: the chief lost the worker's heartbeats, the worker the chief's
    # coordination service (both before the link came back).
    (chief,) = _lost_peer_lines(text, 0)
    assert chief.startswith(f"worker-0 lost worker-1 ({cluster3.node(node)}:8888): it stopped "
                            "sending heartbeats")
    (worker,) = _lost_peer_lines(text, 1)
    assert worker.startswith(f"worker-1 lost worker-0 ({cluster3.node(1)}:8888): its "
                             "coordination service did not answer")
    assert "(exit 138: retryable)." in worker


def test_a_slow_link_only_slows_training(cluster3, tmp_path):
    """Node 2's link capped at 1 Mbit/s each way (tc tbf): every step moves DeepConvNet's 494 KB
    gradient over it, so a step takes seconds instead of a fraction, and training ends as it
    would on a fast link."""
    model_dir = tmp_path / "run"
    cluster3.do("cap", "2", "1mbit")
    try:
        job = cluster3.sbatch(tmp_path, [*MNIST, PATIENT_PEERS, f"--model_dir={model_dir}",
                                         "--epochs=2", "--steps_per_epoch=3",
                                         "--batch_size=20"], nodes=2, nodelist=(1, 2))
        fields = cluster3.wait_end(job, 500, tmp_path)
    finally:
        cluster3.do("cap", "2", "off")
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    assert hosts_of(text)["1"] == f"{cluster3.node(2)}:8888"  # the capped node took part
    assert_workers_identical(model_dir)
    assert history_epochs(model_dir) == ["0", "1"] and iterations(model_dir) == 2 * 3
    # Keras's epoch line: "3/3 - 13s - 4s/step - ..."; epoch 2 (epoch 1 includes tracing).
    per_step = re.findall(r"^0: 3/3 - \S+ - (\d+)(m?s)/step", text, re.M)
    assert len(per_step) == 2, text[-3000:]
    seconds = int(per_step[1][0]) / (1000 if per_step[1][1] == "ms" else 1)
    # 494 KB each way per step at 125 KB/s is 4 s; at least half of it, whatever the algorithm.
    assert seconds >= 2, f"{seconds} s a step over a 1 Mbit/s link"

"""The MNIST app as a 2-worker cluster on 127.0.0.1, run as users run it:

    python -m launch.local --num_workers=2 -- python -m apps.train_mnist ...

Proves: only the chief writes outputs; a kill -9 of one worker stops the cluster and the same
command resumes with no finished epoch lost; SIGTERM to one worker or to the launcher stops
both workers after the same step and the reruns end with exactly epochs * steps updates.
The stop and restore rules themselves are tested in one process in tests/test_runtime.py; that 2
workers compute what 1 process computes is tests/test_multiworker_compat.py's job. These are the
slow group (pytest -m slow).
Each cluster run costs ~20-30 s here (two TensorFlow start-ups on 2 cores); every wait has a
deadline and every process started is killed in a finally block.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import FIXTURE_MNIST, PATIENT_PEERS, REPO, parent_pid
from suite.models.registry import load_keras_file

RUN_TIMEOUT_S = 240  # one cluster run, start to exit
# No --strategy: inside a cluster (TF_CONFIG names 2 tasks) auto means multi_worker.
# PATIENT_PEERS (why: conftest); a lost worker is still seen at once, because launch.local stops
# the cluster when one of its processes dies.
APP = [sys.executable, "-m", "apps.train_mnist", f"--data_dir={FIXTURE_MNIST}",
       "--noverify_checksums", "--batch_size=10", PATIENT_PEERS]


def _worker_index(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        return json.loads(env[b"TF_CONFIG"])["task"]["index"]
    except (OSError, KeyError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """One `launch.local --num_workers=2 -- <the app>` run, watched from outside."""

    def __init__(self, model_dir: str, *flags: str, grace_s: float = 5, tmpdir: str | None = None):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "CUDA_VISIBLE_DEVICES": ""}
        env.pop("TF_CONFIG", None)
        if tmpdir:
            env["TMPDIR"] = tmpdir
        command = [sys.executable, "-m", "launch.local", "--num_workers=2",
                   f"--grace_period_s={grace_s}", "--", *APP, f"--model_dir={model_dir}", *flags]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.workers: dict[int, int] = {}  # worker index -> pid

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def find_workers(self) -> dict[int, int]:
        for name in os.listdir("/proc"):
            if name.isdigit() and parent_pid(int(name)) == self.proc.pid:
                index = _worker_index(int(name))
                if index is not None:
                    self.workers[index] = int(name)
        return self.workers

    def wait_until(self, predicate, what: str, timeout: float = RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while not predicate():
            self.find_workers()
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {what}:\n" \
                                             f"{self.output[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n{self.output[-4000:]}"
            time.sleep(0.1)
        self.find_workers()

    def finish(self, timeout: float = RUN_TIMEOUT_S) -> int:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode

    def close(self):
        """Whatever happened, no process of this run outlives the test."""
        if self.proc.poll() is None:
            self.find_workers()  # while they are still the launcher's children
            self.proc.send_signal(signal.SIGTERM)  # forwarded to the workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.workers.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_to_end(model_dir: str, *flags: str, **kw) -> tuple[int, str]:
    with Cluster(model_dir, *flags, **kw) as cluster:
        return cluster.finish(), cluster.output


def _state(model_dir: str, worker: str = "") -> dict | None:
    """{"epoch", "step"} of a worker's backup (the chief's by default)."""
    path = os.path.join(model_dir, "backup", worker, "state.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return {"epoch": state["epoch"], "step": state["step"]}


def _epochs_logged(model_dir: str) -> list[int]:
    from suite.viz.plots import read_history

    return [int(e) for e in read_history(os.path.join(model_dir, "history.csv"))["epoch"]]


def _iterations(model_dir: str) -> int:
    model = load_keras_file(os.path.join(model_dir, "checkpoints", "last.keras"), compile=True)
    return int(model.optimizer.iterations.numpy())


def _test_accuracies(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\[worker (\d)\] Test accuracy: (\S+%)", output, re.M))


def _resumed_from(output: str, worker: int) -> tuple[int, int] | None:
    """(epoch, step) a worker said it resumes from (1-based epoch, as printed)."""
    found = re.search(rf"^\[worker {worker}\] Resuming from the backup in \S+: epoch (\d+), "
                      r"step (\d+)\.", output, re.M)
    return (int(found[1]), int(found[2])) if found else None


def _tree(root: str) -> set[str]:
    """Every file under `root`, as a path relative to it."""
    return {os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(root) for name in names}


# -- the app as a 2-worker cluster -----------------------------------------------------------
@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_writes_outputs(tmp_path):
    model_dir, tmpdir = str(tmp_path / "run"), tmp_path / "tmp"
    tmpdir.mkdir()
    scratch_seen = set()

    def non_chief_checkpoint_written():
        scratch = [d for d in os.listdir(tmpdir) if d.startswith("suite-worker-1-")]
        scratch_seen.update(scratch)
        return any(os.path.exists(tmpdir / d / "checkpoints" / "last.keras") for d in scratch)

    with Cluster(model_dir, "--epochs=2", "--steps_per_epoch=5", tmpdir=str(tmpdir)) as cluster:
        # The non-chief's checkpoints go to its own temporary folder, seen while it runs.
        cluster.wait_until(non_chief_checkpoint_written, "checkpoint in the non-chief's scratch")
        chief_pid = cluster.workers[0]
        assert cluster.finish() == 0, cluster.output[-4000:]
    output = cluster.output

    accuracies = _test_accuracies(output)
    assert set(accuracies) == {"0", "1"} and accuracies["0"] == accuracies["1"], accuracies
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert results["replicas"] == 2 and f"{100 * results['test_accuracy']:.2f}%" == accuracies["0"]

    assert "\"strategy\": \"CollectiveAllReduceStrategy\", \"replicas\": 2" in output  # auto
    files = {re.sub(r"ckpt-\d+", "ckpt-N", f) for f in _tree(model_dir)}
    expected = {"history.csv", "results.json", "run.json", "flags.txt", ".run.lock",
                "learning_curves.png", "misclassified.png", "confusion_matrix.png",
                "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/best.json",
                "checkpoints/last.json", "backup/ckpt-N/model.weights.h5", "backup/state.json",
                "backup/worker-1/ckpt-N/model.weights.h5", "backup/worker-1/state.json"}
    events = {f for f in files if f.startswith("logs/")}
    exported = {f for f in files if f.startswith("export/")}
    assert files - events - exported == expected
    # One TensorBoard file per folder, each named after the process that wrote it: the chief.
    assert sorted(os.path.dirname(f) for f in events) == ["logs/train", "logs/validation"]
    assert all(f".{chief_pid}." in os.path.basename(f) for f in events), (chief_pid, events)
    assert "export/mnist/1/saved_model.pb" in exported
    assert {f.split("/")[2] for f in exported} == {"1"}  # exported once, by one worker
    assert _epochs_logged(model_dir) == [0, 1]
    with open(os.path.join(model_dir, "history.csv")) as f:
        assert len(f.read().split()) == 3  # header + 2 epochs: one writer
    assert scratch_seen and not [d for d in os.listdir(tmpdir) if d.startswith("suite-")]


@pytest.mark.slow
def test_kill_9_of_a_worker_stops_the_cluster_and_the_rerun_loses_no_epoch(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = ("--epochs=3", "--steps_per_epoch=10", "--noexport")
    with Cluster(model_dir, *flags, grace_s=3) as cluster:
        cluster.wait_until(lambda: (_state(model_dir) or {}).get("epoch", 0) >= 1,
                           "finished epoch")
        time.sleep(0.5)  # into the next epoch's steps
        killed_at = time.monotonic()
        os.kill(cluster.workers[1], signal.SIGKILL)
        code = cluster.finish(timeout=60)
        stop_s = time.monotonic() - killed_at
    assert code != 0, cluster.output[-4000:]
    assert stop_s < 30, f"the launcher took {stop_s:.0f} s to stop the surviving worker"
    done = _state(model_dir)["epoch"]
    assert 1 <= done < 3 and _state(model_dir)["step"] == 0

    code, output = run_to_end(model_dir, *flags)
    assert code == 0, output[-4000:]
    # Both workers resume from the chief's backup, so from the same epoch.
    assert f"[worker 0] Resuming from the backup in {model_dir}/backup: epoch {done + 1}" in output
    assert _resumed_from(output, 0) == _resumed_from(output, 1) == (done + 1, 0)
    accuracies = _test_accuracies(output)
    assert accuracies["0"] == accuracies["1"]  # same weights on both workers
    assert _epochs_logged(model_dir) == [0, 1, 2]
    assert _iterations(model_dir) == 3 * 10


@pytest.mark.slow
def test_sigterm_stops_both_workers_after_the_same_step_and_reruns_finish_exactly(tmp_path):
    model_dir = str(tmp_path / "run")
    steps, every = 12, 4
    flags = ("--epochs=2", f"--steps_per_epoch={steps}", f"--backup_every_steps={every}",
             "--noexport")

    def stop(cluster, send_signal):
        started = time.monotonic()
        send_signal()
        code = cluster.finish(timeout=90)
        # The grace period is longer: no worker was killed, both left on their own.
        assert time.monotonic() - started < 45
        return code

    # 1. A scheduler preempting one node: SIGTERM to worker 1 only, mid-epoch 1.
    with Cluster(model_dir, *flags, grace_s=60) as cluster:
        cluster.wait_until(lambda: (_state(model_dir) or {}).get("step", 0) >= every,
                           f"step {every}")
        code = stop(cluster, lambda: os.kill(cluster.workers[1], signal.SIGTERM))
    output = cluster.output
    assert code == 143, output[-4000:]
    first = _state(model_dir)
    assert first["epoch"] == 0 and every <= first["step"] < steps
    assert _state(model_dir, "worker-1") == first  # the same step on both workers
    assert "[worker 0] another worker received SIGTERM" in output
    for worker in ("0", "1"):
        assert (f"[worker {worker}] stopped by SIGTERM at epoch 1, step {first['step']}"
                in output)
    assert "Traceback" not in output

    # 2. Preempting the whole job: SIGTERM to the launcher, which forwards it, in epoch 2.
    with Cluster(model_dir, *flags, grace_s=60) as cluster:
        cluster.wait_until(lambda: (_state(model_dir) or {}).get("epoch") == 1
                           and (_state(model_dir) or {}).get("step", 0) >= every,
                           f"step {every} of epoch 2")
        code = stop(cluster, lambda: cluster.proc.send_signal(signal.SIGTERM))
    output = cluster.output
    assert code == 143, output[-4000:]
    assert _resumed_from(output, 0) == _resumed_from(output, 1) == (1, first["step"])
    second = _state(model_dir)
    assert second["epoch"] == 1 and every <= second["step"] < steps
    assert _state(model_dir, "worker-1") == second
    for worker in ("0", "1"):
        assert (f"[worker {worker}] stopped by SIGTERM at epoch 2, step {second['step']}"
                in output)

    # 3. The rerun finishes: not one update more or less than 2 epochs of 12 steps.
    code, output = run_to_end(model_dir, *flags)
    assert code == 0, output[-4000:]
    assert _epochs_logged(model_dir) == [0, 1]
    assert _iterations(model_dir) == 2 * steps
    accuracies = _test_accuracies(output)
    assert accuracies["0"] == accuracies["1"]

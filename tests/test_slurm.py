"""launch/slurm.sbatch submitted to a real one-node Slurm cluster (slurm-wlm + munge, started by
launch/slurm_one_node.sh, the same steps README gives users): a run that finishes, a failing
task that ends the job with its exit code, and a 2-worker job that its time limit's SIGTERM
preempts, that requeues itself, resumes and ends at exactly epochs x steps optimizer steps.

The fixture installs Slurm with apt-get when it is missing (root, Debian packages), starts it
for the session and stops it afterwards; a cluster already running in the default state folder
is used as it is and left running.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import FIXTURE_MNIST, PATIENT_PEERS, REPO

pytestmark = pytest.mark.slow
SCRIPT = os.path.join(REPO, "launch", "slurm_one_node.sh")
SBATCH = os.path.join(REPO, "launch", "slurm.sbatch")
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
APP = [f"--data_dir={FIXTURE_MNIST}", "--noverify_checksums", "--noexport", PATIENT_PEERS]


@pytest.fixture(scope="module")
def slurm():
    """The environment for sbatch/scontrol against the running one-node cluster."""
    started = subprocess.run(["bash", SCRIPT, "start"], capture_output=True, text=True,
                             timeout=900)
    assert started.returncode == 0, (
        "could not start a one-node Slurm cluster (root and Debian's slurm-wlm and munge are "
        f"needed; launch/slurm_one_node.sh):\n{started.stderr[-3000:]}")
    try:
        conf = started.stdout.strip().rsplit("=", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")
               and k != "TF_CONFIG"}
        yield {**env, "SLURM_CONF": conf, "PYTHON": sys.executable, "PYTHONPATH": REPO}
    finally:
        if "already running" not in started.stderr:
            subprocess.run(["bash", SCRIPT, "stop"], capture_output=True, timeout=300)


def sbatch(env, out_dir, *args: str, cluster=(), **variables) -> str:
    """Submits launch/slurm.sbatch with sbatch options `cluster` and app flags `args`."""
    result = subprocess.run(
        ["sbatch", "--parsable", "--gres=none", f"--output={out_dir}/job-%j.out", *cluster,
         SBATCH, *APP, *args], cwd=REPO, env={**env, **variables}, capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def wait(env, job: str, timeout_s: float) -> dict:
    """scontrol's fields of `job` once it has ended (not pending a requeue)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job], env=env,
                               capture_output=True, text=True, timeout=60).stdout
        fields = dict(re.findall(r"(\w+)=(\S*)", shown))
        if fields.get("JobState") in FINAL:
            return fields
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], env=env, timeout=60)
            pytest.fail(f"job {job} still {fields.get('JobState')} after {timeout_s} s")
        time.sleep(2)


def output(out_dir, job: str) -> str:
    with open(os.path.join(out_dir, f"job-{job}.out")) as f:
        return f.read()


def test_a_job_runs_to_the_end(slurm, tmp_path):
    model_dir = tmp_path / "run"
    job = sbatch(slurm, tmp_path, f"--model_dir={model_dir}", "--epochs=2",
                 "--steps_per_epoch=5", "--batch_size=10",
                 cluster=["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=5"])
    fields = wait(slurm, job, 300)
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == (
        "COMPLETED", "0:0", "0"), text[-3000:]
    assert f"job {job}: finished" in text and "0: Test accuracy:" in text
    assert json.load(open(model_dir / "results.json"))["status"] == "completed"


def test_a_failing_task_ends_the_job_with_its_exit_code_and_no_requeue(slurm, tmp_path):
    job = sbatch(slurm, tmp_path, f"--model_dir={tmp_path / 'run'}", f"--data_dir={tmp_path}",
                 cluster=["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=5"])
    fields = wait(slurm, job, 300)
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == (
        "FAILED", "2:0", "0"), text[-3000:]
    assert "train-images-idx3-ubyte.gz is missing" in text
    assert f"job {job}: failed with exit code 2" in text and "not requeued" in text


def test_a_two_worker_job_preempted_by_its_time_limit_requeues_and_resumes_exactly(slurm,
                                                                                   tmp_path):
    """Two tasks on one CPU-only node train one model (MultiWorkerMirroredStrategy by auto);
    the time limit's SIGTERM (--signal=TERM@15 of a 1-minute limit) stops both after the same
    step, which both save; the script requeues; each rerun resumes there, until done."""
    model_dir = tmp_path / "run"
    epochs, steps = 2, 600
    job = sbatch(slurm, tmp_path, f"--model_dir={model_dir}", f"--epochs={epochs}",
                 f"--steps_per_epoch={steps}", "--batch_size=20",
                 cluster=["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=1",
                          "--signal=TERM@15"], MAX_REQUEUES="40")
    # Each restart gets ~30 s, start-up included: on a loaded 2-core machine (the other slow
    # tests beside it) some restarts train a step or none, so the cap leaves room for many.
    fields = wait(slurm, job, 25 * 60)
    text = output(tmp_path, job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), text[-4000:]
    restarts = int(fields["Restarts"])
    assert restarts >= 1, text[-4000:]
    assert text.count("stopped by SIGTERM with the state saved (exit 143): requeueing") == restarts
    assert '"strategy": "CollectiveAllReduceStrategy", "replicas": 2' in text
    # Both workers stop after the same step each time, and resume from it.
    stops = {task: re.findall(rf"^{task}: stopped by SIGTERM at epoch (\d+), step (\d+);", text,
                              re.M) for task in (0, 1)}
    assert stops[0] == stops[1] and len(stops[0]) >= 1, stops
    resumed = re.findall(r"^0: Resuming from the backup in \S+: epoch (\d+), step (\d+)\.", text,
                         re.M)
    # A signal after the last step (during evaluation or export, or while the finished
    # processes exit) saves nothing new: the rerun resumes with training done, at epoch
    # epochs + 1, step 0, and evaluates and exports. Such a run printed no stop line, but its
    # chief either said so or had already reported the test accuracy.
    requeued_runs = re.split(r"requeueing \(restart \d+ of at most", text)[:-1]
    after_training = sum(
        1 for run in requeued_runs if not re.search(r"^0: stopped by SIGTERM at epoch", run, re.M)
        and re.search(r"^0: (SIGTERM received outside training|Test accuracy)", run, re.M))
    # Under load a restart's whole time slot can go to starting Python and TensorFlow: the
    # time limit's signal then ends the tasks before the chief's first line (its Runtime line,
    # printed before anything is read or written), so nothing was saved or changed.
    never_started = sum(1 for run in requeued_runs
                        if not re.search(r'^0: Runtime: \{"strategy"', run, re.M))
    assert restarts == len(stops[0]) + after_training + never_started, text[-4000:]
    assert resumed == stops[0] + [(str(epochs + 1), "0")] * after_training  # as printed
    assert f"job {job}: finished" in text
    # One row per finished epoch, the exact number of steps, and only the chief's files.
    with open(model_dir / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().split()] == ["epoch", "0", "1"]
    from suite.models.registry import load_keras_file

    model = load_keras_file(str(model_dir / "checkpoints" / "last.keras"), compile=True)
    assert int(model.optimizer.iterations.numpy()) == epochs * steps
    top = set(os.listdir(model_dir))
    assert {"results.json", "history.csv", "checkpoints", "backup"} <= top
    assert set(os.listdir(model_dir / "backup")) - {"state.json"} == {
        next(d for d in os.listdir(model_dir / "backup") if d.startswith("ckpt-")), "worker-1"}

"""The runner carries apps that are not one model.fit: tests/toy_apps/points_gan (two models, two
optimizers, a custom train_step under fit) and tests/toy_apps/chain_dqn (a custom loop with an
environment, a replay buffer, a target network and extra state). Each resumes after kill -9 and
after SIGTERM to the same step count as an uninterrupted run (the loop also to the same weights),
stops with every worker at the same step under launch.local, and exports a SavedModel with its
own signature that saved_model_cli serves."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, parent_pid, run_in_process

TESTS = os.path.join(REPO, "tests")
ENV = {**os.environ, "PYTHONPATH": f"{REPO}:{TESTS}", "CUDA_VISIBLE_DEVICES": ""}
ENV.pop("TF_CONFIG", None)
GAN = ["toy_apps.points_gan", "--epochs=3", "--steps_per_epoch=8", "--batch_size=16"]
DQN = ["toy_apps.chain_dqn", "--env_steps=90", "--steps_per_epoch=30"]
TIMEOUT_S = 240


def start(app: list[str], model_dir: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *app, f"--model_dir={model_dir}", *extra],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rerun(app: list[str], model_dir: str, capsys) -> tuple[dict, str]:
    """The same command again, in this process (a fresh process costs a TensorFlow start)."""
    import importlib

    capsys.readouterr()
    module = importlib.import_module(app[0])
    task_class = next(value for value in vars(module).values() if isinstance(value, type)
                      and value.__module__ == module.__name__ and hasattr(value, "config_class"))
    results = run_in_process(task_class, *app[1:], f"--model_dir={model_dir}")
    return results, capsys.readouterr().out


def state(model_dir: str, worker: str = "") -> dict:
    try:
        with open(os.path.join(model_dir, "backup", worker, "state.json")) as f:
            saved = json.load(f)
        return {"epoch": saved["epoch"], "step": saved["step"]}
    except (OSError, ValueError, KeyError):
        return {}


def wait_for(predicate, proc, what: str):
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert proc.poll() is None, f"exited before {what}:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


def sigterm_in_epoch_2(app: list[str], model_dir: str, delay_s: float, at_step: int,
                       every: int) -> tuple[dict, str]:
    """Starts `app`, sends SIGTERM once epoch 2 reached step `at_step` (backups every `every`
    steps show it), checks the exit code 143; returns the saved (epoch, step) and the output."""
    proc = start(app, model_dir, f"--step_delay_s={delay_s}", f"--backup_every_steps={every}")
    wait_for(lambda: state(model_dir).get("epoch") == 1 and state(model_dir)["step"] >= at_step,
             proc, f"step {at_step} of epoch 2")
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output[-3000:]
    stopped = state(model_dir)
    assert stopped["epoch"] == 1 and stopped["step"] >= at_step
    return stopped, output


def results(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "results.json")) as f:
        return json.load(f)


def q_weights(model_dir: str) -> list[np.ndarray]:
    """The chain DQN's final online network (last.keras)."""
    from suite.models.registry import load_keras_file

    return load_keras_file(os.path.join(model_dir, "checkpoints", "last.keras")).get_weights()


def saved_model_cli_run(version_dir: str, name: str, array: np.ndarray, tmp_path) -> dict:
    """Outputs of `saved_model_cli run` on serving_default, parsed into arrays by key."""
    np.save(tmp_path / "input.npy", array)
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    out = subprocess.run([cli, "run", "--dir", version_dir, "--tag_set", "serve",
                          "--signature_def", "serving_default",
                          f"--inputs={name}={tmp_path / 'input.npy'}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = {}
    for key, block in re.findall(r"Result for output key (\w+):\n(.*?)(?=Result for|\Z)",
                                 out.stdout, re.S):
        found[key] = np.array([float(v) for v in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?",
                                                            block)])
    return found


# -- in one process: both kinds run through the runner -------------------------------------------
def test_the_gan_trains_both_optimizers_and_guards_its_own_losses(tmp_path):
    from toy_apps.points_gan import PointsGanTask

    out = run_in_process(PointsGanTask, f"--model_dir={tmp_path}", "--epochs=2",
                         "--steps_per_epoch=4", "--batch_size=16", "--d_learning_rate=1e-3",
                         "--g_learning_rate=3e-3")
    assert out["d_iterations"] == out["g_iterations"] == 8
    with open(tmp_path / "history.csv") as f:
        assert f.readline().strip() == "epoch,d_loss,g_loss"
    assert not os.path.exists(tmp_path / "checkpoints" / "best.keras")  # no metric ranks them
    assert os.path.exists(tmp_path / "learning_curves.png")
    run_file = json.load(open(tmp_path / "run.json"))
    assert run_file["app"] == "toy_apps.points_gan" and run_file["models"] == ["model"]


def test_prefixed_optimizer_flags_belong_to_one_app_each():
    from absl import flags

    from conftest import parse_app_flags
    from suite.runtime.flags import define_flags
    from toy_apps.chain_dqn import ChainDqnTask
    from toy_apps.points_gan import PointsGanTask

    gan = parse_app_flags(PointsGanTask, "--g_learning_rate=0.5", "--d_beta_1=0.1")
    assert (gan.g_learning_rate, gan.d_learning_rate, gan.d_beta_1, gan.g_beta_1) == (
        0.5, 2e-3, 0.1, 0.5)
    with pytest.raises(flags.UnrecognizedFlagError):
        parse_app_flags(PointsGanTask, "--learning_rate=0.1")  # only the prefixed groups
    with pytest.raises(flags.UnrecognizedFlagError):
        parse_app_flags(ChainDqnTask, "--epochs=3")  # counted in --env_steps
    with pytest.raises(flags.IllegalFlagValueError, match="--g_learning_rate must be > 0"):
        parse_app_flags(PointsGanTask, "--g_learning_rate=0")
    fv = flags.FlagValues()
    define_flags(fv, PointsGanTask.config_class)
    with pytest.raises(flags.DuplicateFlagError):  # never silently keep another app's defaults
        define_flags(fv, ChainDqnTask.config_class)


def test_the_loop_saves_models_optimizer_and_buffer_and_records_each_epoch(tmp_path):
    from toy_apps.chain_dqn import ChainDqnTask

    out = run_in_process(ChainDqnTask, f"--model_dir={tmp_path}", "--env_steps=60",
                         "--steps_per_epoch=20")
    assert out["status"] == "completed" and out["iterations"] == 60
    rows = [line.split(",") for line in open(tmp_path / "history.csv").read().split()]
    assert rows[0][0] == "epoch" and "val_return" in rows[0] and len(rows) == 4
    saved = json.load(open(tmp_path / "backup" / "state.json"))
    assert (saved["epoch"], saved["step"]) == (3, 0) and saved["extra"]["size"] == 60
    folder = tmp_path / "backup" / saved["saved"]
    assert sorted(os.listdir(folder)) == ["extra.npz", "q_network.weights.h5",
                                          "q_optimizer.optimizer.npz", "target.weights.h5"]
    again = run_in_process(ChainDqnTask, f"--model_dir={tmp_path}", "--env_steps=60",
                           "--steps_per_epoch=20")  # finished: nothing to train, same export
    assert again["export"] == out["export"] and again["iterations"] == 60


def test_a_signal_in_the_loops_last_epoch_end_exits_with_its_code_and_training_saved(
        tmp_path, monkeypatch):
    """SIGTERM while the last epoch's metrics are computed (after the last step's check) used
    to be swallowed: the run evaluated and exported while a scheduler's kill drew near. Now it
    ends with 143, every epoch saved, and the rerun has nothing left to train."""
    from toy_apps.chain_dqn import ChainDqnTask

    measure = ChainDqnTask.epoch_metrics

    def signalled_at_the_end(self, run, epoch):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return measure(self, run, epoch)

    monkeypatch.setattr(ChainDqnTask, "epoch_metrics", signalled_at_the_end)
    args = (f"--model_dir={tmp_path}", "--env_steps=40", "--steps_per_epoch=20")
    out = run_in_process(ChainDqnTask, *args)
    assert out["status"] == "interrupted" and out["exit_code"] == 143, out
    assert state(str(tmp_path)) == {"epoch": 2, "step": 0}
    assert not os.path.exists(tmp_path / "results.json")  # not evaluated: the kill is near
    monkeypatch.setattr(ChainDqnTask, "epoch_metrics", measure)
    again = run_in_process(ChainDqnTask, *args)
    assert again["status"] == "completed" and again["iterations"] == 40
    assert "export" in again


def files_under(root: str) -> dict[str, bytes]:
    """Every file's bytes but the run lock's (it names the last process): what a refused run
    must leave as it was."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in set(names) - {".run.lock"}:
            with open(os.path.join(folder, name), "rb") as f:
                found[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return found


@pytest.fixture(scope="module")
def finished_chain_dqn(tmp_path_factory):
    from toy_apps.chain_dqn import ChainDqnTask

    folder = tmp_path_factory.mktemp("finished")
    run_in_process(ChainDqnTask, f"--model_dir={folder}", "--env_steps=40", "--steps_per_epoch=20")
    return folder


@pytest.mark.parametrize("name", ["extra.npz", "q_optimizer.optimizer.npz"])
@pytest.mark.parametrize("damage, message", [
    (lambda path: open(path, "r+b").truncate(500), "is not a readable .npz file"),
    (os.remove, "is missing")])
def test_a_damaged_npz_in_the_backup_is_named_and_left_as_it_was(
        tmp_path, finished_chain_dqn, name, damage, message):
    """A truncated or missing optimizer or extra-state file is damage (exit code 2 naming it
    and the ways forward), not a traceback (KeyError, BadZipFile: exit code 1, "diverged")."""
    from suite.errors import DamagedStateError
    from toy_apps.chain_dqn import ChainDqnTask

    model_dir = tmp_path / "run"
    shutil.copytree(finished_chain_dqn, model_dir)
    path = model_dir / "backup" / json.load(open(model_dir / "backup" / "state.json"))[
        "saved"] / name
    damage(path)
    before = files_under(str(model_dir))
    with pytest.raises(DamagedStateError, match=f"{re.escape(str(path))} {message}") as error:
        run_in_process(ChainDqnTask, f"--model_dir={model_dir}", "--env_steps=60",
                       "--steps_per_epoch=20")
    assert "--model_dir=<new folder>" in str(error.value)
    assert files_under(str(model_dir)) == before


# -- interrupted and resumed, as separate processes ------------------------------------------------
@pytest.mark.slow
def test_the_loop_resumes_after_sigterm_and_kill_9_to_the_uninterrupted_weights(tmp_path,
                                                                                 capsys):
    reference = str(tmp_path / "reference")
    assert rerun(DQN, reference, capsys)[0]["iterations"] == 90
    expected = q_weights(reference)

    # SIGTERM mid-epoch: the exact step is saved; the rerun ends where the reference did.
    signalled = str(tmp_path / "sigterm")
    stopped, output = sigterm_in_epoch_2(DQN, signalled, 0.02, at_step=10, every=5)
    assert stopped["step"] < 30
    assert f"stopped by SIGTERM at epoch 2, step {stopped['step']}" in output
    done, output = rerun(DQN, signalled, capsys)
    assert f"Resuming from the backup in {signalled}/backup: epoch 2, step " \
           f"{stopped['step']}." in output
    assert done["iterations"] == 90
    for a, b in zip(q_weights(signalled), expected):
        np.testing.assert_array_equal(a, b)

    # kill -9: back to the last finished epoch, which replays to the same weights.
    killed = str(tmp_path / "killed")
    proc = start(DQN, killed, "--step_delay_s=0.02")
    wait_for(lambda: state(killed).get("epoch") == 1, proc, "the first finished epoch")
    time.sleep(0.3)
    proc.kill()
    proc.wait(timeout=30)
    done, output = rerun(DQN, killed, capsys)
    assert "epoch 2, step 0." in output and done["iterations"] == 90
    for a, b in zip(q_weights(killed), expected):
        np.testing.assert_array_equal(a, b)
    with open(os.path.join(killed, "history.csv")) as f:
        assert [line.split(",")[0] for line in f.read().split()] == ["epoch", "0", "1", "2"]


@pytest.mark.slow
def test_the_gan_resumes_after_sigterm_and_kill_9_to_the_same_step_counts(tmp_path, capsys):
    signalled = str(tmp_path / "sigterm")
    stopped, _ = sigterm_in_epoch_2(GAN, signalled, 0.05, at_step=2, every=2)
    assert stopped["step"] < 8
    done, _ = rerun(GAN, signalled, capsys)
    assert done["d_iterations"] == done["g_iterations"] == 3 * 8  # not one step more or less
    with open(os.path.join(signalled, "history.csv")) as f:  # the cut epoch is logged once
        assert [line.split(",")[0] for line in f.read().split()] == ["epoch", "0", "1", "2"]

    killed = str(tmp_path / "killed")
    proc = start(GAN, killed, "--step_delay_s=0.05")
    wait_for(lambda: state(killed).get("epoch") == 1, proc, "the first finished epoch")
    proc.kill()
    proc.wait(timeout=30)
    done, output = rerun(GAN, killed, capsys)
    assert "Resuming from the backup" in output
    assert done["d_iterations"] == done["g_iterations"] == 24


# -- their own signatures, served by saved_model_cli; re-exported by apps.export ----------------
@pytest.mark.slow
def test_each_exports_its_own_signature_that_saved_model_cli_serves(tmp_path):
    from suite.models.registry import load_keras_file
    from toy_apps.chain_dqn import ChainDqnTask
    from toy_apps.points_gan import PointsGanTask

    gan = run_in_process(PointsGanTask, f"--model_dir={tmp_path / 'gan'}", "--epochs=1",
                         "--steps_per_epoch=4", "--batch_size=16")
    latent = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    served = saved_model_cli_run(gan["export"], "latent", latent, tmp_path)
    model = load_keras_file(str(tmp_path / "gan" / "checkpoints" / "last.keras"),
                            custom_objects=PointsGanTask.custom_objects())
    np.testing.assert_allclose(served["points"].reshape(3, 2),
                               np.asarray(model.generator(latent)), atol=1e-5)

    dqn = run_in_process(ChainDqnTask, f"--model_dir={tmp_path / 'dqn'}", "--env_steps=20",
                         "--steps_per_epoch=10")
    observations = np.eye(5, dtype="float32")
    served = saved_model_cli_run(dqn["export"], "observation", observations, tmp_path)
    q = load_keras_file(str(tmp_path / "dqn" / "checkpoints" / "last.keras"))
    expected = np.asarray(q(observations))
    np.testing.assert_allclose(served["q_values"].reshape(5, 2), expected, atol=1e-5)
    np.testing.assert_array_equal(served["action"], expected.argmax(-1))

    # Re-exported from its checkpoint and run.json alone, its Model subclass too. apps.export
    # imports Tasks from suite.tasks only: an app of one's own exports through its class.
    from suite.tasks.runs import export_run

    model_dir = tmp_path / "gan"
    assert export_run(str(model_dir), cls=PointsGanTask) == str(
        model_dir / "export" / "points_gan" / "2")
    out = subprocess.run([sys.executable, "-m", "apps.export", f"--model_dir={model_dir}"],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "none of suite.tasks' Tasks" in out.stderr, out.stderr


# -- two workers stop together -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("app", [GAN, DQN], ids=["gan", "loop"])
def test_two_workers_stop_at_the_same_step_and_the_rerun_finishes(tmp_path, app):
    model_dir = str(tmp_path / "run")
    command = [sys.executable, "-m", "launch.local", "--num_workers=2", "--grace_period_s=60",
               "--", sys.executable, "-m", *app, f"--model_dir={model_dir}"]
    proc = subprocess.Popen(command + ["--step_delay_s=0.05", "--backup_every_steps=2"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: state(model_dir).get("epoch") == 1 and state(model_dir)["step"] >= 2,
                 proc, "step 2 of epoch 2")
        workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_pid(int(p)) ==
                   proc.pid]
        os.kill(max(workers), signal.SIGTERM)  # the second worker only: a preempted node
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output[-4000:]
    assert state(model_dir) == state(model_dir, "worker-1") and state(model_dir)["step"] >= 2
    assert "another worker received SIGTERM" in output
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-4000:]
    assert '"replicas": 2' in done.stdout
    final = results(model_dir)
    if app is GAN:
        assert final["d_iterations"] == final["g_iterations"] == 24
    else:
        assert final["iterations"] == 90


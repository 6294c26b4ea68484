"""The runner's parts on tiny models: the resume state, stop requests, per-epoch records, the
run lock, damaged backups, the strategy inside a cluster, and a quiet start-up."""
import json
import os
import signal
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURE_MNIST, REPO, run_app
from suite.errors import DamagedStateError, StateMismatchError
from suite.runtime.backup import ResumeState
from suite.runtime.callbacks import EpochGate, EpochRecords, EpochValidation, ResumableTraining
from suite.runtime.records import EpochCheckpoints, HistoryLog
from suite.runtime.stopping import StopRequests, WorkerSum

MNIST_ARGS = [f"--data_dir={FIXTURE_MNIST}", "--noverify_checksums", "--batch_size=10",
              "--noexport"]


def tiny_model(strategy=None, units=3, optimizer="sgd"):
    with (strategy or tf.distribute.get_strategy()).scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])
        model.compile(keras.optimizers.SGD(0.1) if optimizer == "sgd"
                      else keras.optimizers.Adam(0.01), "mse")
    return model


def tiny_data(n=40, batch=4):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x[:, :3])).batch(batch).repeat()


def tree(root) -> dict[str, bytes]:
    """Every file under `root` with its bytes, but the run lock (it names the last process to
    hold it): to show that nothing was changed."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name == ".run.lock":
                continue
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return out


# -- the resume state -------------------------------------------------------------------------
def test_resume_state_round_trips_models_optimizers_and_extra_state(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(optimizer="adam")
    model.fit(tiny_data(), epochs=1, steps_per_epoch=3, verbose=0)
    loose = keras.optimizers.Adam(0.1)  # an optimizer no model tracks (a custom loop's)
    loose.build(model.trainable_variables)
    loose.apply_gradients(zip([tf.ones_like(v) for v in model.trainable_variables],
                              model.trainable_variables))
    rng = np.random.default_rng(5)
    extra = {"buffer": np.arange(12, dtype=np.uint8).reshape(3, 4), "epsilon": 0.25,
             "rng": rng.bit_generator.state}
    state = ResumeState(str(tmp_path / "backup"), {"q": model}, {"loose": loose},
                        lambda: extra)
    state.save(2, 7)
    state.save(3, 0)  # a second save replaces the first checkpoint folder
    assert sorted(os.listdir(tmp_path / "backup")) == ["ckpt-2", "state.json"]

    keras.utils.set_random_seed(1)
    fresh = tiny_model(optimizer="adam")
    fresh_loose = keras.optimizers.Adam(0.1)
    fresh_loose.build(fresh.trainable_variables)
    got = {}
    restored = ResumeState(str(tmp_path / "backup"), {"q": fresh}, {"loose": fresh_loose},
                           lambda: {}, got.update).restore()
    assert restored == (3, 0)
    for a, b in zip(model.weights + model.optimizer.variables + loose.variables,
                    fresh.weights + fresh.optimizer.variables + fresh_loose.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(got["buffer"], extra["buffer"])
    assert got["epsilon"] == 0.25
    again = np.random.default_rng()
    again.bit_generator.state = got["rng"]
    assert again.integers(1 << 30) == rng.integers(1 << 30)


def test_a_half_written_checkpoint_folder_is_never_used_and_is_cleaned_up(tmp_path):
    model = tiny_model()
    state = ResumeState(str(tmp_path), {"model": model})
    state.save(1, 0)
    os.makedirs(tmp_path / "ckpt-9")  # a save killed before state.json was replaced
    with open(tmp_path / "ckpt-9" / "model.weights.h5", "wb") as f:
        f.write(b"half")
    assert ResumeState(str(tmp_path), {"model": tiny_model()}).restore() == (1, 0)
    state.save(2, 0)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-10", "state.json"]


def test_a_backup_of_the_single_file_layout_still_restores(tmp_path):
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    model.save_weights(str(tmp_path / "latest.weights.h5"))
    with open(tmp_path / "state.json", "w") as f:
        json.dump({"epoch": 4, "step": 2}, f)
    fresh = tiny_model()
    assert ResumeState(str(tmp_path), {"model": fresh}).restore() == (4, 2)
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


@pytest.mark.parametrize("damage, message", [
    (lambda d: open(d / "state.json", "w").write('{"epoch": 1,\n'),
     "state.json is not readable JSON"),
    (lambda d: open(d / "state.json", "w").write('{"epoch": "one", "step": 0}'),
     "lacks its integer 'epoch' and 'step'"),
    (lambda d: open(d / "ckpt-1" / "model.weights.h5", "r+b").truncate(100),
     "model.weights.h5 is not a readable HDF5 file"),
    (lambda d: os.remove(d / "ckpt-1" / "model.weights.h5"), "model.weights.h5 is missing"),
])
def test_a_damaged_backup_is_named_and_left_as_it_was(tmp_path, damage, message):
    ResumeState(str(tmp_path), {"model": tiny_model()}).save(1, 0)
    damage(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(DamagedStateError, match=message) as error:
        ResumeState(str(tmp_path), {"model": tiny_model()}).restore()
    assert str(tmp_path) in str(error.value)
    assert tree(tmp_path) == before


def test_a_backup_of_another_model_is_a_mismatch_not_damage(tmp_path):
    ResumeState(str(tmp_path), {"model": tiny_model(units=3)}).save(1, 0)
    with pytest.raises(StateMismatchError, match="different configuration"):
        ResumeState(str(tmp_path), {"model": tiny_model(units=5)}).restore()


def test_an_unbuilt_optimizer_in_a_model_attribute_is_refused_not_skipped(tmp_path):
    class TwoOptimizers(keras.Model):
        def __init__(self):
            super().__init__()
            self.net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            self.g_optimizer = keras.optimizers.Adam()

        def call(self, x):
            return self.net(x)

    model = TwoOptimizers()
    model(np.zeros((1, 4)))
    model.g_optimizer.build(model.net.trainable_variables)
    ResumeState(str(tmp_path), {"m": model}).save(1, 0)
    fresh = TwoOptimizers()
    fresh(np.zeros((1, 4)))
    with pytest.raises(RuntimeError, match="have no variables yet"):
        ResumeState(str(tmp_path), {"m": fresh}).restore()


# -- stop requests and the per-epoch records in fit ------------------------------------------
class SignalAt(keras.callbacks.Callback):
    """Sends this process `sig` at the end of step `at` (0-based, counted over all epochs),
    before the backup's own hook."""

    def __init__(self, at, sig=signal.SIGTERM):
        super().__init__()
        self.at, self.sig, self.seen = at, sig, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at + 1:
            os.kill(os.getpid(), self.sig)


class CountEvaluations:
    """Counts the model's evaluate() calls (validation runs inside fit's callbacks)."""

    def __init__(self, model):
        self.count, original = 0, model.evaluate

        def evaluate(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        model.evaluate = evaluate


def fit_with_records(model, tmp_path, signal_at, epochs, strategy=None):
    """fit with the runner's callbacks; returns (gate, stop, backup callback, evaluations)."""
    gate = EpochGate()
    worker_sum = WorkerSum(strategy) if strategy is not None else None
    stop = StopRequests(worker_sum)
    state = ResumeState(str(tmp_path / "backup"), {"model": model})
    backup = ResumableTraining(gate, state, stop)
    evaluations = CountEvaluations(model)
    validation = EpochValidation(gate, tiny_data().take(2))
    records = EpochRecords(gate, HistoryLog(str(tmp_path / "history.csv")),
                           EpochCheckpoints(str(tmp_path / "checkpoints"), "val_loss", "min"))
    before = signal.getsignal(signal.SIGTERM)
    with stop:
        model.fit(tiny_data(), epochs=epochs, steps_per_epoch=10, verbose=0,
                  callbacks=[SignalAt(signal_at), validation, records, backup])
    assert signal.getsignal(signal.SIGTERM) is before
    return gate, stop, state, evaluations


def test_agree_at_end_takes_a_signal_after_the_last_check_and_keeps_an_earlier_stop():
    stop = StopRequests()
    stop.agree_at_end()
    assert stop.stopped_by is None and stop.exit_code == 0  # no signal: training completes
    stop.requested = "SIGINT"
    stop.agree_at_end()
    assert stop.stopped_by == "SIGINT" and stop.exit_code == 130
    stop.requested = "SIGTERM"
    stop.agree_at_end()
    assert stop.stopped_by == "SIGINT"  # already stopped: the agreed signal stands


def test_a_signal_mid_epoch_saves_that_step_and_neither_validates_nor_logs_the_epoch(
        two_cpu_strategy, tmp_path):
    model = tiny_model(two_cpu_strategy)
    gate, stop, state, evaluations = fit_with_records(model, tmp_path, 12, 3, two_cpu_strategy)
    assert stop.stopped_by == "SIGTERM" and stop.exit_code == 143 and gate.partial
    assert (state.read()["epoch"], state.read()["step"]) == (1, 3)
    assert int(model.optimizer.iterations.numpy()) == 13
    assert evaluations.count == 1  # epoch 1 only: the cut-short epoch 2 was not validated
    assert [row["epoch"] for row in HistoryLog(str(tmp_path / "history.csv")).rows()] == ["0"]
    assert EpochCheckpoints(str(tmp_path / "checkpoints")).last_epoch() == 1


def test_a_stop_on_an_epochs_last_step_ends_that_epoch_and_saves_the_next(tmp_path):
    """Not (epoch 0, step 10): resuming that would fit 0 steps, i.e. forever on a repeat()."""
    model = tiny_model()
    gate, stop, state, evaluations = fit_with_records(model, tmp_path, 9, 3)
    assert stop.stopped_by == "SIGTERM" and not gate.partial
    assert (state.read()["epoch"], state.read()["step"]) == (1, 0)
    assert int(model.optimizer.iterations.numpy()) == 10 and evaluations.count == 1


def test_every_worker_restores_the_chiefs_backup(two_cpu_strategy, tmp_path):
    from suite.runtime.config import RuntimeConfig
    from suite.runtime.devices import WorkerRole
    from suite.runtime.training import RunPaths, resume

    trained = tiny_model(two_cpu_strategy)
    trained.fit(tiny_data(), epochs=1, steps_per_epoch=5, verbose=0)
    ResumeState(str(tmp_path / "backup"), {"model": trained}).save(1, 0)
    runtime = types.SimpleNamespace(role=WorkerRole("worker", 1, 1, False),
                                    strategy=two_cpu_strategy)
    paths = RunPaths(run_dir=str(tmp_path), write_dir=str(tmp_path / "scratch"), checkpoints="",
                     backup=str(tmp_path / "backup" / "worker-1"),
                     backup_source=str(tmp_path / "backup"), logs="", history_csv="")
    fresh = tiny_model(two_cpu_strategy)  # optimizer not built yet: restore builds it in scope
    resumed = resume(RuntimeConfig(str(tmp_path)), runtime, paths, {"model": fresh})
    assert (resumed.epoch, resumed.step) == (1, 0)
    assert resumed.writer.backup_dir.endswith("worker-1")
    for a, b in zip(trained.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 5


def test_history_has_one_row_per_epoch_and_grows_columns(tmp_path):
    log = HistoryLog(str(tmp_path / "history.csv"))
    log.append(0, {"loss": 2.0})
    log.append(1, {"loss": 1.5})
    log.append(1, {"loss": 1.4, "val_loss": 1.6})  # epoch 1 run again after a kill -9
    log.append(2, {"loss": 1.2, "val_loss": 1.3})
    rows = log.rows()
    assert [(r["epoch"], r["loss"], r["val_loss"]) for r in rows] == [
        ("0", "2.0", ""), ("1", "1.4", "1.6"), ("2", "1.2", "1.3")]
    with open(tmp_path / "history.csv") as f:
        assert f.read().count("epoch") == 1  # one header


# -- one run per model folder ------------------------------------------------------------------
def test_a_second_run_on_a_folder_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    from suite.errors import RunLockedError
    from suite.runtime.run_lock import RunLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from suite.runtime.run_lock import RunLock; "
         f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"{tmp_path} is in use by another run \(pid "
                                                 rf"{holder.pid} on "):
            RunLock(str(tmp_path)).acquire()
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait(timeout=10)
        with RunLock(str(tmp_path)) as lock:
            assert lock.held
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()} "):
                RunLock(str(tmp_path)).acquire()  # even from the same process
        RunLock(str(tmp_path)).acquire().release()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_the_app_refuses_a_folder_another_run_is_using(tmp_path):
    model_dir = str(tmp_path / "run")
    first = subprocess.Popen(
        [sys.executable, "-m", "apps.train_mnist", f"--model_dir={model_dir}", "--epochs=50",
         "--steps_per_epoch=20", *MNIST_ARGS], cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        while "Epoch 1/50" not in first.stdout.readline():
            assert first.poll() is None, "the first run ended early"
        second = run_app("apps.train_mnist", f"--model_dir={model_dir}", "--epochs=1",
                         *MNIST_ARGS, timeout=120)
        assert second.returncode == 2
        assert f"error: {model_dir} is in use by another run (pid {first.pid}" in second.stderr
        assert "apps.train_mnist" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


# -- a damaged backup through the app ----------------------------------------------------------
@pytest.mark.slow
def test_a_damaged_backup_stops_the_app_with_the_ways_forward_and_checkpoint_resume_works(
        tmp_path, capsys):
    from conftest import run_in_process
    from suite.tasks.mnist import MnistTask

    model_dir = str(tmp_path / "run")
    args = [f"--model_dir={model_dir}", "--steps_per_epoch=5", *MNIST_ARGS]
    assert run_in_process(MnistTask, "--epochs=2", *args)["status"] == "completed"
    with open(os.path.join(model_dir, "backup", "state.json"), "w") as f:
        f.write('{"epoch": 2,\n')  # truncated, as a full disk leaves it
    before = tree(model_dir)
    out = run_app("apps.train_mnist", "--epochs=3", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (f"error: the resume state in {model_dir}/backup is damaged: {model_dir}/backup/"
            "state.json is not readable JSON") in out.stderr
    assert f"Nothing under {model_dir} was changed" in out.stderr
    assert "--resume_from=checkpoint" in out.stderr and "after epoch 2" in out.stderr
    assert "--model_dir=<new folder>" in out.stderr
    assert tree(model_dir) == before

    capsys.readouterr()
    resumed = run_in_process(MnistTask, "--epochs=3", "--resume_from=checkpoint", *args)
    assert resumed["status"] == "completed"
    assert (f"Resuming from {model_dir}/checkpoints/last.keras: epoch 3, step 0."
            in capsys.readouterr().out)
    moved = [d for d in os.listdir(tmp_path / "run") if d.startswith("backup.damaged-")]
    assert len(moved) == 1  # kept, not deleted
    with open(os.path.join(model_dir, moved[0], "state.json")) as f:
        assert f.read() == '{"epoch": 2,\n'
    from suite.models.registry import load_keras_file

    model = load_keras_file(os.path.join(model_dir, "checkpoints", "last.keras"), compile=True)
    assert int(model.optimizer.iterations.numpy()) == 3 * 5


# -- the strategy inside a cluster -------------------------------------------------------------
def test_cluster_size_comes_from_tf_config_or_the_slurm_step():
    from suite.runtime.devices import cluster_tasks

    two = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker",
                                                                      "index": 0}})
    assert cluster_tasks({"TF_CONFIG": two})[0] == 2
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"],
                                    "evaluator": ["d:4"]}})
    assert cluster_tasks({"TF_CONFIG": chief})[0] == 3  # the evaluator does not train
    assert cluster_tasks({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "4"}) == (
        4, "this Slurm job step has 4 tasks")
    assert cluster_tasks({"SLURM_JOB_ID": "7"})[0] == 1  # the batch script itself, not srun
    assert cluster_tasks({})[0] == 1
    with pytest.raises(ValueError, match="TF_CONFIG is not a JSON object"):
        cluster_tasks({"TF_CONFIG": "{not json"})


def test_a_single_machine_strategy_inside_a_cluster_is_refused_before_any_work(
        tmp_path, monkeypatch, mnist_small):
    from conftest import run_in_process
    from suite.tasks.mnist import MnistTask

    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                            "task": {"type": "worker", "index": 0}})
    monkeypatch.setenv("TF_CONFIG", tf_config)
    for strategy in ("mirrored", "one_device"):
        with pytest.raises(ValueError) as error:
            run_in_process(MnistTask, f"--model_dir={tmp_path}/run", f"--strategy={strategy}",
                           data_override=mnist_small)
        assert (f"--strategy={strategy} trains on one machine, but this process is one task of "
                "a cluster (TF_CONFIG names 2 training tasks)") in str(error.value)
        assert "--strategy=multi_worker (or auto)" in str(error.value)
    assert not os.path.exists(tmp_path / "run")


def test_peer_timeout_reaches_the_coordination_service_the_strategy_starts():
    """A one-worker cluster (it needs no peer to start) in a fresh process: the strategy keeps
    the service configured with --peer_timeout_s's heartbeat timeout; 0 leaves TensorFlow's."""
    code = ("import json, socket; from suite.runtime.devices import make_strategy\n"
            "from tensorflow.python.eager import context\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
            "import os; os.environ['TF_CONFIG'] = json.dumps({'cluster': {'worker': "
            "[f'127.0.0.1:{port}']}, 'task': {'type': 'worker', 'index': 0}})\n"
            "import sys; strategy = make_strategy('multi_worker', int(sys.argv[1]))\n"
            "config = context.context().coordination_service\n"
            "print(strategy.num_replicas_in_sync, config.service_type, "
            "config.heartbeat_timeout_in_ms, [j.name for j in config.coordinated_job_list])")
    for seconds, expected in ((45, "1 standalone 45000 ['worker']"),
                              (0, "1 standalone 0 ['worker']")):
        out = subprocess.run([sys.executable, "-c", code, str(seconds)], cwd=REPO,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""})
        assert out.stdout.strip().splitlines()[-1:] == [expected], out.stdout + out.stderr[-3000:]


def test_a_negative_peer_timeout_is_refused_naming_the_flag():
    from absl import flags

    from suite.runtime.config import RuntimeConfig
    from suite.runtime.flags import define_flags

    fv = flags.FlagValues()
    define_flags(fv, RuntimeConfig)
    with pytest.raises(flags.IllegalFlagValueError, match="--peer_timeout_s must be >= 0"):
        fv(["app", "--peer_timeout_s=-1"])


# -- start-up ------------------------------------------------------------------------------------
def test_start_up_notes_are_hidden_and_other_stderr_lines_pass():
    from suite.runtime.startup import quiet_native_startup, without_startup_noise

    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796171891.414869    2542 port.cc:153] oneDNN custom operations are on. "
        "You may see slightly different numerical results.\n"
        "I0000 00:00:1796171891.415586    2542 cudart_stub.cc:31] Could not find cuda drivers on "
        "your machine, GPU will not be used.\n"
        "E0000 00:00:1796171892.241267    2542 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
    real = "E0000 00:00:1.0    1 some_kernel.cc:1] a real error\n"
    assert without_startup_noise(noise + real) == real
    code = ("import os, sys; from suite.runtime.startup import quiet_native_startup\n"
            f"with quiet_native_startup():\n    os.write(2, {(noise + real).encode()!r})\n"
            "print('done')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert out.stdout == "done\n" and out.stderr == real
    assert quiet_native_startup  # imported


STARTUP_NOISE = ("Could not find cuda drivers", "failed call to cuInit", "oneDNN custom operations",
                 "absl::InitializeLog")


@pytest.mark.slow
def test_an_app_prints_no_tensorflow_start_up_lines_unless_verbosity_asks(tmp_path):
    out = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run", f"--data_dir={tmp_path}",
                  timeout=120)
    assert out.returncode == 2 and "error:" in out.stderr
    assert not [line for line in out.stderr.splitlines()
                if any(n in line for n in STARTUP_NOISE)], out.stderr
    assert out.stdout.startswith("Runtime: "), out.stdout[:500]
    verbose = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run",
                      f"--data_dir={tmp_path}", "--verbosity=0", timeout=120)
    assert "oneDNN custom operations" in verbose.stderr or "cuda" in verbose.stderr.lower()


@pytest.mark.slow
@pytest.mark.parametrize("app, args", [
    ("apps.train_classifier", ["--model=nosuchnet"]),  # its validators load Keras
    ("apps.train_segmenter", ["--dataset=/nonexistent", "--augmentations=flip"]),
    ("apps.train_dqn", ["--env=NoSuchEnv-v0", "--env_steps=10"]),
])
def test_every_app_is_quiet_at_start_up_even_when_its_flags_are_refused(tmp_path, app, args):
    out = run_app(app, f"--model_dir={tmp_path}/run", *args, timeout=120)
    assert out.returncode != 0 and ("error" in out.stderr.lower()), out.stderr[-2000:]
    assert not [line for line in out.stderr.splitlines()
                if any(n in line for n in STARTUP_NOISE)], out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("setting, expected", [(None, "1 True"), ("0", "0 False")])
def test_onednn_is_on_by_default_on_x86_unless_the_user_set_it(setting, expected):
    import platform

    assert platform.machine() in ("x86_64", "AMD64")  # this project's machines
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("import os, suite, tensorflow; from suite.runtime.startup import onednn_enabled; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_enabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": REPO}, timeout=120)
    assert out.stdout.strip() == expected, out.stderr[-2000:]


@pytest.mark.parametrize("flags_line, expected", [
    ("flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n", True),  # Zen 4
    ("flags\t\t: fpu sse2 avx2 fma amx_bf16 amx_tile\n", True),  # Sapphire Rapids
    ("flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n", False),  # Cascade Lake
    ("flags\t\t: fpu sse2 avx2 fma\n", False),  # an AVX2-only EPYC
])
def test_fastest_precision_is_bfloat16_only_where_the_cpu_has_it(tmp_path, monkeypatch,
                                                                 flags_line, expected):
    from suite.runtime import devices

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n" + flags_line)
    assert devices.cpu_has_bfloat16(str(cpuinfo)) is expected
    assert devices.cpu_has_bfloat16(str(tmp_path / "missing")) is False
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: expected)
    monkeypatch.setattr(devices, "cuda_compute_capabilities", lambda: [])
    assert devices.resolve_precision("fastest") == ("mixed_bfloat16" if expected else "float32")
    assert devices.resolve_precision("auto") == "float32"  # the faithful default stays float32
    monkeypatch.setattr(devices, "cuda_compute_capabilities", lambda: [(8, 0)])
    assert devices.resolve_precision("fastest") == "mixed_float16"
    monkeypatch.setattr(devices, "cuda_compute_capabilities", lambda: [(6, 1)])
    assert devices.resolve_precision("fastest") == "float32"


@pytest.mark.parametrize("cap, expected", [
    ("AVX2", False), ("avx512_core_vnni", False), ("AVX512_CORE_BF16", True), ("ALL", True),
])
def test_a_onednn_isa_cap_below_bfloat16_makes_fastest_float32(tmp_path, monkeypatch, cap,
                                                               expected):
    """ONEDNN_MAX_CPU_ISA=AVX2 on a Zen 4 (how the benches stand in for an AVX2-only CPU)
    leaves oneDNN no bfloat16 instructions: `fastest` must not pick bfloat16 there."""
    from suite.runtime import devices

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        monkeypatch.setenv(name, cap)
        assert devices.cpu_has_bfloat16(str(cpuinfo)) is expected


def test_step_decay_starts_on_the_first_update_of_its_epoch_warm_up_included():
    from absl import flags

    from suite.runtime.config import OptimizerConfig
    from suite.runtime.flags import define_flags
    from suite.runtime.optim import learning_rate_schedule

    def rates(**config):
        schedule = learning_rate_schedule(OptimizerConfig(
            learning_rate=0.1, lr_schedule="step", lr_decay_epochs=(3,), **config), 10, 6)
        return [float(schedule(step)) for step in (0, 10, 20, 29, 30, 59)]

    assert rates() == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    # 2 warm-up epochs ramp to 0.1; the decay still comes at epoch 3, not 2 + 3
    assert rates(warmup_epochs=2) == pytest.approx([0.005, 0.055, 0.1, 0.1, 0.01, 0.01])
    fv = flags.FlagValues()
    define_flags(fv, OptimizerConfig)
    with pytest.raises(flags.IllegalFlagValueError, match="must all come after --warmup_epochs"):
        fv(["app", "--lr_schedule=step", "--lr_decay_epochs=2,5", "--warmup_epochs=2"])


def test_keep_every_keeps_each_kth_epochs_model_with_when_and_its_logs(tmp_path):
    model = tiny_model()
    checkpoints = EpochCheckpoints(str(tmp_path), "val_loss", "min", keep_every=2)
    weights = {}
    for epoch in range(5):
        model.layers[0].kernel.assign(np.full((4, 3), float(epoch), "float32"))
        weights[epoch + 1] = model.get_weights()
        checkpoints.save(model, epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0})
    kept = sorted(p for p in os.listdir(tmp_path) if p.startswith("epoch-"))
    assert kept == ["epoch-002.json", "epoch-002.keras", "epoch-004.json", "epoch-004.keras"]
    for epochs in (2, 4):
        restored = keras.models.load_model(checkpoints.kept_path(epochs))
        np.testing.assert_array_equal(restored.get_weights()[0], weights[epochs][0])
        with open(tmp_path / f"epoch-{epochs:03d}.json") as f:
            info = json.load(f)
        assert info["epoch"] == epochs and info["logs"] == {"loss": 1.0 / epochs, "val_loss": 2.0}
        assert abs(info["saved_unix"] - time.time()) < 120
    assert not [p for p in os.listdir(tmp_path) if p.startswith("tmp-")]
    with pytest.raises(ValueError, match="keep_every must be >= 0"):
        EpochCheckpoints(str(tmp_path), keep_every=-1)


def test_keep_checkpoints_every_reaches_an_apps_checkpoints(tmp_path):
    from conftest import run_in_process
    from suite.tasks.mnist import MnistTask

    model_dir = tmp_path / "run"
    results = run_in_process(MnistTask, f"--model_dir={model_dir}", "--epochs=2",
                             "--steps_per_epoch=3", "--keep_checkpoints_every=1", *MNIST_ARGS)
    assert results["status"] == "completed"
    kept = sorted(p for p in os.listdir(model_dir / "checkpoints") if p.startswith("epoch-"))
    assert kept == ["epoch-001.json", "epoch-001.keras", "epoch-002.json", "epoch-002.keras"]

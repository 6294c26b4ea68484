"""DQN: the replay buffer (frames once, wrap-around, terminal vs time-limit ends), the
schedules, the Nature network, exact resume on CartPole, Atari end to end, export, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO, run_in_process
from suite.rl.replay import ReplayBuffer
from suite.tasks.dqn import DqnTask, crossed, epsilon_at

CARTPOLE = ["--env=CartPole-v1", "--env_steps=600", "--eval_every=200", "--learning_starts=100",
            "--train_freq=4", "--gradient_steps=2", "--target_update=50", "--batch_size=16",
            "--buffer_size=1000", "--units=32,32", "--learning_rate=1e-3", "--eval_episodes=2",
            "--final_eval_episodes=3", "--nogif"]


# -- the replay buffer ---------------------------------------------------------------------------
def stack_of(*frames):
    return np.stack([np.full((2, 2), f, np.uint8) for f in frames])


def test_frames_are_stored_once_and_stacks_are_rebuilt_with_episode_padding():
    buffer = ReplayBuffer(40, (2, 2), np.uint8, stack=3, num_envs=1)
    buffer.add_start(0, stack_of(1, 1, 1))  # reset: FrameStackObservation repeats the frame
    buffer.add(0, 0, 1.0, stack_of(1, 1, 2), False)
    buffer.add(0, 1, 2.0, stack_of(1, 2, 3), False)
    buffer.add(0, 0, 3.0, stack_of(2, 3, 4), True)  # terminated
    buffer.add_start(0, stack_of(7, 7, 7))  # the next episode
    buffer.add(0, 1, 5.0, stack_of(7, 7, 8), False)
    assert buffer.frames.shape == (1, 40, 2, 2)  # one frame per row, not a stack of 3
    assert len(buffer) == 4  # start rows are not transitions
    batch = buffer.sample(200, np.random.default_rng(0))
    seen = {}
    for s, a, r, s2, t in zip(batch.states, batch.actions, batch.rewards, batch.next_states,
                              batch.terminated):
        seen[float(r)] = (s[:, 0, 0].tolist(), int(a), s2[:, 0, 0].tolist(), float(t))
    assert seen == {1.0: ([1, 1, 1], 0, [1, 1, 2], 0.0), 2.0: ([1, 1, 2], 1, [1, 2, 3], 0.0),
                    3.0: ([1, 2, 3], 0, [2, 3, 4], 1.0),
                    5.0: ([7, 7, 7], 1, [7, 7, 8], 0.0)}  # no frame of the previous episode


def test_a_time_limit_end_bootstraps_from_its_real_final_observation():
    buffer = ReplayBuffer(20, (1,), np.float32, num_envs=1)
    buffer.add_start(0, [0.0])
    buffer.add(0, 1, 1.0, [1.0], False)
    buffer.add(0, 1, 1.0, [2.0], False)  # truncated here: terminated stays False
    buffer.add_start(0, [10.0])  # the vector env's reset, on the next step
    batch = buffer.sample(50, np.random.default_rng(1))
    pairs = {(float(s[0]), float(s2[0]), float(t)) for s, s2, t in
             zip(batch.states, batch.next_states, batch.terminated)}
    assert pairs == {(0.0, 1.0, 0.0), (1.0, 2.0, 0.0)}  # nothing leads into the reset


def test_the_ring_wraps_and_never_samples_overwritten_frames():
    buffer = ReplayBuffer(10, (1,), np.float32, num_envs=2)  # 5 rows per environment
    for env in (0, 1):
        buffer.add_start(env, [100.0 * env])
        for k in range(1, 13):
            buffer.add(env, 0, float(k), [100.0 * env + k], False)
    assert list(buffer.written) == [13, 13]
    assert len(buffer) == 8  # 5 rows each, the oldest is only a state: 4 transitions each
    batch = buffer.sample(400, np.random.default_rng(2))
    states = batch.states[:, 0] % 100
    assert set(states.tolist()) == {8.0, 9.0, 10.0, 11.0}  # only what is still in the ring
    np.testing.assert_array_equal(batch.next_states[:, 0] - batch.states[:, 0], 1.0)
    assert set((batch.states[:, 0] // 100).tolist()) == {0.0, 1.0}  # both environments


def test_the_buffer_round_trips_through_its_state_and_refuses_another_shape():
    buffer = ReplayBuffer(20, (3,), np.float32, num_envs=2)
    buffer.add_start(0, [1, 2, 3])
    buffer.add(0, 1, 0.5, [4, 5, 6], True)
    copy = ReplayBuffer(20, (3,), np.float32, num_envs=2)
    copy.load_state({k: v.copy() for k, v in buffer.state().items()})
    rng = np.random.default_rng(3)
    a, b = buffer.sample(4, np.random.default_rng(3)), copy.sample(4, rng)
    np.testing.assert_array_equal(a.next_states, b.next_states)
    with pytest.raises(ValueError, match="another `buffer_size`, `num_envs` or environment"):
        ReplayBuffer(30, (3,), np.float32, num_envs=2).load_state(buffer.state())


# -- schedules and networks ------------------------------------------------------------------
def test_epsilon_decays_linearly_then_stays_and_periods_fire_once_per_multiple():
    eps = [epsilon_at(s, 1000, 1.0, 0.1, 0.5) for s in (0, 250, 500, 900)]
    np.testing.assert_allclose(eps, [1.0, 0.55, 0.1, 0.1])
    # a vector step of 4 environment steps: the target update every 10 fires at 10, 20, 30
    fired = [done for before, done in zip(range(0, 40, 4), range(4, 44, 4))
             if crossed(before, done, 10)]
    assert fired == [12, 20, 32, 40]


def test_the_nature_network_has_the_papers_layers_and_takes_raw_frames():
    from suite.models.dqn import build_dqn_atari

    model = build_dqn_atari(6)
    assert [layer.name for layer in model.layers if layer.weights] == [
        "conv1", "conv2", "conv3", "fc", "q_values"]
    assert model.count_params() == 1_687_206  # 8x8/4 32, 4x4/2 64, 3x3/1 64, 512, 6
    q = model(np.zeros((2, 4, 84, 84), np.uint8))
    assert tuple(q.shape) == (2, 6) and keras.backend.standardize_dtype(q.dtype) == "float32"


def test_many_gradient_steps_in_one_call_equal_one_call_each():
    """The learning step runs --gradient_steps batches in one tf.function: the same updates as
    one call per batch, with the target network held between target updates."""
    import types

    import keras
    import tensorflow as tf

    from suite.runtime.config import OptimizerConfig
    from suite.tasks.dqn import DqnConfig

    batches = ReplayBuffer(100, (4,), np.float32)
    batches.add_start(0, np.zeros(4))
    rng = np.random.default_rng(0)
    for k in range(60):
        batches.add(0, int(k % 2), 1.0, rng.normal(size=4), k % 13 == 12)
    samples = [batches.sample(8, np.random.default_rng(s)) for s in range(3)]
    fields = ("states", "actions", "rewards", "next_states", "terminated")
    weights = []
    for fused in (True, False):
        task = DqnTask(DqnConfig(optimizer=OptimizerConfig(learning_rate=1e-2, clipnorm=10.0),
                                 env="CartPole-v1", units=(16,), init="glorot", double_dqn=True,
                                 gamma=0.9, env_steps=100, train_freq=1, gradient_steps=3,
                                 batch_size=8, eval_every=100))
        task.frame_shape, task.stack, task.num_actions, task.atari = (4,), 1, 2, False
        run = types.SimpleNamespace(strategy=tf.distribute.get_strategy())
        run.models = task.build(run)
        learn, _, _ = task._compiled(run)
        stacked = [np.stack([getattr(b, f) for b in samples]) for f in fields]
        if fused:
            learn(*stacked)
        else:
            for g in range(3):
                learn(*[x[g:g + 1] for x in stacked])
        weights.append(run.models["q_network"].get_weights())
        keras.backend.clear_session()
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_learning_rate_schedules_count_epochs_of_eval_every_steps():
    """--eval_every env steps are an epoch: at --train_freq=4 and --gradient_steps=2, 100 env
    steps are 50 updates. (The whole run was one epoch: a step schedule never decayed.)"""
    import types

    import keras

    from conftest import app_task

    task = app_task(DqnTask, "--env_steps=1000", "--eval_every=100", "--train_freq=4",
                    "--gradient_steps=2", "--units=8", "--learning_rate=0.01",
                    "--lr_schedule=step", "--lr_decay_epochs=2,4", "--warmup_epochs=1")
    task.frame_shape, task.stack, task.num_actions, task.atari = (4,), 1, 2, False
    task.build(types.SimpleNamespace())
    rates = {}
    for update in (0, 24, 50, 99, 100, 199, 200, 499):
        task.optimizer.iterations.assign(update)
        rates[update] = float(task.optimizer.learning_rate)
    keras.backend.clear_session()
    np.testing.assert_allclose(list(rates.values()), [
        0.01 / 50, 0.01 * 25 / 50,  # warm-up over epoch 1's 50 updates
        0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4],  # decays as epochs 2 and 4 begin
        rtol=1e-5)


# -- the app ---------------------------------------------------------------------------------------
def test_bad_environments_say_what_to_use():
    from absl import flags

    from conftest import parse_app_flags

    with pytest.raises(flags.IllegalFlagValueError, match="Did you mean CartPole-v1"):
        parse_app_flags(DqnTask, "--env=CartPol-v1")
    with pytest.raises(flags.IllegalFlagValueError, match="ALE/Pong-v5"):
        parse_app_flags(DqnTask, "--env=NoSuchGame-v0")


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_sticky_actions_outside_0_to_1_are_refused(value):
    from absl import flags

    from conftest import parse_app_flags

    with pytest.raises(flags.IllegalFlagValueError, match=r"--sticky_actions must be in \[0, 1\]"):
        parse_app_flags(DqnTask, f"--sticky_actions={value}")
    assert parse_app_flags(DqnTask, "--sticky_actions=0.25").sticky_actions == 0.25


def test_an_atari_id_without_ale_py_says_what_to_install(monkeypatch):
    import builtins

    from suite.rl import environments

    real_import = builtins.__import__

    def without_ale(name, *args, **kwargs):
        if name == "ale_py":
            raise ImportError("No module named 'ale_py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ale)
    with pytest.raises(ValueError, match="pip install ale-py==0.12.1"):
        environments.check_env_id("ALE/Pong-v5")


def test_an_environment_with_a_missing_dependency_says_what_to_install(monkeypatch):
    """LunarLander-v3 is listed as classic control but needs Box2D: a clear ValueError (exit
    code 2) with gymnasium's install hint, not a traceback (exit code 1, "diverged")."""
    import sys

    from suite.rl import environments

    monkeypatch.setitem(sys.modules, "Box2D", None)  # `import Box2D` fails, installed or not
    for name in ("gymnasium.envs.box2d.lunar_lander", "gymnasium.envs.box2d"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ValueError, match=r'`env=LunarLander-v3` needs .*'
                                         r'pip install "gymnasium\[box2d\]"'):
        environments.make_vector_env("LunarLander-v3", 1)


def test_cartpole_trains_records_and_exports_a_policy(tmp_path):
    import tensorflow as tf

    results = run_in_process(DqnTask, f"--model_dir={tmp_path}", *CARTPOLE)
    assert results["status"] == "completed" and results["final_eval_episodes"] == 3
    assert results["gradient_steps_done"] == (600 - 100) // 4 * 2 + 2  # phases at 100..600
    with open(tmp_path / "history.csv") as f:
        header = f.readline().strip().split(",")
        assert {"return", "val_return", "loss", "epsilon"} <= set(header)
        assert len(f.read().split()) == 3
    for name in ("episode_returns.png", "learning_curves.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    policy = tf.saved_model.load(results["export"]).signatures["serving_default"]
    observations = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    served = policy(observation=tf.constant(observations))
    from suite.models.registry import load_keras_file

    # The export is the policy the run keeps: the best greedy evaluation's checkpoint.
    q = np.asarray(load_keras_file(str(tmp_path / "checkpoints" / "best.keras"))(observations))
    np.testing.assert_allclose(served["q_values"].numpy(), q, atol=1e-5)
    np.testing.assert_array_equal(served["action"].numpy(), q.argmax(-1))


def test_every_epoch_line_prints_its_numbers_in_one_order(tmp_path, capsys):
    """Episode returns, losses and epsilon are logged as they come: an epoch whose first step
    learned began its line with the loss, one whose first step ended an episode with the return.
    The line follows history.csv's sorted columns instead."""
    import re

    run_in_process(DqnTask, f"--model_dir={tmp_path}", "--env_steps=400", "--eval_every=100",
                   "--learning_starts=150", "--train_freq=1", "--units=8", "--buffer_size=200",
                   "--batch_size=8", "--eval_episodes=1", "--final_eval_episodes=0", "--nogif",
                   "--noexport")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    orders = [re.findall(r"(\w+) -?[0-9.e+-]+(?:,|$)", line.split(": ", 1)[1]) for line in lines]
    assert len(orders) == 4 and "loss" not in orders[0] and "loss" in orders[2]
    logged = ["epsilon", "loss", "return"]  # averaged over the epoch's steps, then the rest
    for order in orders:
        assert order[:len([k for k in logged if k in order])] == [k for k in logged if k in order]
        assert order[-4:] == ["val_return", "val_return_std", "steps", "seconds"], order


@pytest.fixture(scope="module")
def cartpole_reference(tmp_path_factory):
    """An uninterrupted seeded CartPole run, for the resumed runs to equal."""
    folder = tmp_path_factory.mktemp("reference")
    run_in_process(DqnTask, f"--model_dir={folder}", *CARTPOLE)
    return folder


def sigterm_at_and_resume(model_dir, monkeypatch, call: int):
    """Runs CARTPOLE with SIGTERM while acting at the `call`-th step (as a scheduler would),
    then reruns it; returns the stopped run's saved state and the resumed final weights."""
    from suite.models.registry import load_keras_file

    act, calls = DqnTask._act, []

    def act_then_signal(self, *args):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return act(self, *args)

    monkeypatch.setattr(DqnTask, "_act", act_then_signal)
    first = run_in_process(DqnTask, f"--model_dir={model_dir}", *CARTPOLE)
    monkeypatch.setattr(DqnTask, "_act", act)
    assert first["status"] == "interrupted" and first["exit_code"] == 143, first
    saved = json.load(open(model_dir / "backup" / "state.json"))
    again = run_in_process(DqnTask, f"--model_dir={model_dir}", *CARTPOLE)
    assert again["status"] == "completed"
    return saved, load_keras_file(str(model_dir / "checkpoints" / "last.keras")).get_weights()


def reference_weights(reference):
    from suite.models.registry import load_keras_file

    return load_keras_file(str(reference / "checkpoints" / "last.keras")).get_weights()


def test_rerunning_a_finished_run_keeps_its_measured_speed(tmp_path, cartpole_reference):
    """Nothing is trained on a rerun of the same command: results.json keeps the speed the
    training measured rather than writing null over it."""
    import shutil

    shutil.copytree(cartpole_reference, tmp_path / "run")
    measured = json.load(open(tmp_path / "run" / "results.json"))["env_steps_per_second"]
    assert measured > 0
    again = run_in_process(DqnTask, f"--model_dir={tmp_path / 'run'}", *CARTPOLE)
    assert again["env_steps_per_second"] == measured
    assert json.load(open(tmp_path / "run" / "results.json"))["env_steps_per_second"] == measured


@pytest.mark.slow
def test_a_sigtermed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch,
                                                              cartpole_reference):
    """SIGTERM at an arbitrary step of a seeded CartPole run: the rerun restores networks,
    optimizer, buffer, epsilon, RNG and the environments' states, and ends bitwise equal."""
    saved, resumed = sigterm_at_and_resume(tmp_path, monkeypatch, 337)
    assert (saved["epoch"], saved["step"]) == (1, 137)  # the exact step
    for a, b in zip(resumed, reference_weights(cartpole_reference)):
        np.testing.assert_array_equal(a, b)


def test_a_run_stopped_as_an_episode_ends_resumes_to_the_uninterrupted_weights(
        tmp_path, monkeypatch, cartpole_reference):
    """Stopped on the step that ends an episode, the rerun's first step is the environment's
    reset: it starts a new episode in the buffer rather than a transition linking the two."""
    ends = [int(r[0]) for r in json.load(open(cartpole_reference / "backup" / "state.json"))[
        "extra"]["episode_returns"]]
    end = next(e for e in ends if e > 100 and e % 200)  # after learning starts, mid-epoch
    saved, resumed = sigterm_at_and_resume(tmp_path, monkeypatch, end)
    assert saved["epoch"] * 200 + saved["step"] == end
    assert saved["extra"]["environments"]["autoreset"] == [True]
    for a, b in zip(resumed, reference_weights(cartpole_reference)):
        np.testing.assert_array_equal(a, b)
    # The cut epoch's row averages all of its steps (its sums are in the backup), not only
    # those after the resume.
    assert history_without_seconds(tmp_path) == history_without_seconds(cartpole_reference)


def history_without_seconds(model_dir) -> list[dict]:
    import csv

    with open(model_dir / "history.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_pong_trains_on_deduplicated_frames_resumes_after_kill_9_and_serves_uint8(tmp_path):
    """A tiny Atari run: the paper's preprocessing, the replay of single frames, kill -9 and
    a resume that keeps the buffer (new episodes: an emulator's state is not saved), and a
    policy that serves raw uint8 observations through saved_model_cli."""
    import shutil
    import time

    model_dir = tmp_path / "pong"
    args = [sys.executable, "-m", "apps.train_dqn", f"--model_dir={model_dir}",
            "--env=ALE/Pong-v5", "--env_steps=600", "--eval_every=200", "--learning_starts=100",
            "--train_freq=4", "--batch_size=8", "--buffer_size=1000", "--target_update=100",
            "--eval_episodes=1", "--final_eval_episodes=1", "--nogif"]
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state_path = model_dir / "backup" / "state.json"
    deadline = time.monotonic() + 300
    while not state_path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=30)
    saved = json.load(open(state_path))
    buffer_bytes = os.path.getsize(model_dir / "backup" / saved["saved"] / "extra.npz")
    assert 1000 * 84 * 84 <= buffer_bytes < 2 * 1000 * 84 * 84  # each frame once, not 4 or 8
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"Resuming from the backup in {model_dir}/backup: epoch 2, step 0." in out.stdout
    results = json.load(open(model_dir / "results.json"))
    assert results["gradient_steps_done"] == (600 - 100) // 4 + 1
    np.save(tmp_path / "obs.npy", np.zeros((2, 4, 84, 84), np.uint8))
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    served = subprocess.run([cli, "run", "--dir", results["export"], "--tag_set", "serve",
                             "--signature_def", "serving_default",
                             f"--inputs=observation={tmp_path / 'obs.npy'}"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr[-2000:]
    assert "action" in served.stdout and "q_values" in served.stdout

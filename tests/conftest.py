"""Test-wide set-up: quiet TensorFlow, two logical CPUs for strategy tests, parsed absl flags."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import pytest  # noqa: E402

import suite  # noqa: E402,F401  (TensorFlow's CPU defaults, as the apps get them)

FIXTURE_MNIST = os.path.join(REPO, "tests", "fixtures", "mnist_small")


def pytest_configure(config):
    # Logical devices can only be configured before TensorFlow initialises its runtime, so once
    # here: two CPU "replicas" let MirroredStrategy tests run on a one-CPU machine.
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from absl import flags

    flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Every MirroredStrategy numbers its collective ops from the same start, so two of them in
    one process can pair up unrelated all-reduces ("Shape mismatch in the collective instance
    100"); sharing one strategy keeps the numbering unique.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """app -> (version folder, loaded signatures) of tests/tiny_exports.py's tiny export of
    that app, each written once per test process, on first use."""
    import tensorflow as tf

    from tiny_exports import export_tiny

    made = {}

    def get(app):
        if app not in made:
            folder = export_tiny(app, str(tmp_path_factory.mktemp(app)))
            made[app] = folder, tf.saved_model.load(folder).signatures
        return made[app]

    return get


@pytest.fixture(scope="session")
def mnist_small():
    from suite.data.mnist import load_mnist_arrays

    return load_mnist_arrays(FIXTURE_MNIST, verify_checksums=False)


def run_app(module: str, *args: str, timeout: float = 300, env: dict | None = None):
    """Runs `python -m <module> args` from the repo root and returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(task_class, *args: str, data_override=None, strategy_override=None) -> dict:
    """Runs a Task through the runner in this process as its app's command line would: flags
    generated from its config and parsed from `args` into a fresh FlagValues, tiny data and a
    strategy injected, and errors worded as the flags (suite.runtime.cli does the same)."""
    from suite.config import field_names
    from suite.runtime.flags import as_flags, config_from_flags
    from suite.runtime.runner import run_task

    fv = parse_app_flags(task_class, *args)
    try:
        config = config_from_flags(fv, task_class.config_class)
        task = task_class(config, data_override=data_override)
        return run_task(task, config.runtime, strategy_override=strategy_override,
                        flags_text=fv.flags_into_string())
    except (ValueError, RuntimeError) as e:
        worded = as_flags(str(e), field_names(task_class.config_class))
        if worded == str(e):
            raise
        try:
            again = type(e)(worded)
        except TypeError:  # an exception class with another constructor keeps its words
            raise e from None
        raise again from e


def app_task(task_class, *args: str):
    """The Task its app's command line `args` describe (flags parsed, config built)."""
    from suite.runtime.flags import config_from_args

    return task_class(config_from_args(task_class.config_class, list(args)))


def parse_app_flags(task_class, *args: str):
    """The app's flags (generated from the Task's config) parsed from `args` into a fresh
    FlagValues."""
    from absl import flags

    from suite.runtime.flags import define_flags

    fv = flags.FlagValues()
    define_flags(fv, task_class.config_class)
    fv(["app", *args])
    return fv


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """Apps set a global dtype policy; keep one test's policy from leaking into the next."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


def parent_pid(pid: int) -> int | None:
    """The parent of process `pid` (from /proc), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def backup_weights(folder) -> list:
    """(name, array) of every dataset in a backup's model weights file, in file order: the
    model's weights and its optimizers' slots."""
    import json

    import h5py

    state = json.load(open(os.path.join(folder, "state.json")))
    arrays = []
    with h5py.File(os.path.join(folder, state["saved"], "model.weights.h5")) as f:
        f.visititems(lambda name, item: arrays.append((name, item[()]))
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_workers_identical(model_dir, workers=(1,)) -> list:
    """The chief's backup and those of `workers` (worker-1 by default) hold the same arrays,
    bitwise (the models and their optimizers' slots); returns their names."""
    import numpy as np

    chief = backup_weights(os.path.join(model_dir, "backup"))
    names = [n for n, _ in chief]
    for worker in workers:
        other = backup_weights(os.path.join(model_dir, "backup", f"worker-{worker}"))
        assert names == [n for n, _ in other]
        for (name, a), (_, b) in zip(chief, other):
            np.testing.assert_array_equal(a, b, err_msg=f"worker-{worker}: {name}")
    return names


def saved_model_cli_run(version_dir, signature: str, name: str, array, tmp_path,
                        out_dir=None) -> str:
    """`saved_model_cli run` of one signature on one input array (a TF Serving-style session);
    returns what it printed (the outputs, unless `out_dir` takes them as .npy files)."""
    import shutil
    import subprocess

    import numpy as np

    np.save(tmp_path / f"{name}.npy", array)
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    where = ["--outdir", str(out_dir), "--overwrite"] if out_dir else []
    served = subprocess.run([cli, "run", "--dir", str(version_dir), "--tag_set", "serve",
                             "--signature_def", signature,
                             f"--inputs={name}={tmp_path / f'{name}.npy'}", *where],
                            capture_output=True, text=True, timeout=180)
    assert served.returncode == 0, served.stderr[-2000:]
    return served.stdout


def saved_model_cli_outputs(version_dir, signature: str, name: str, array, tmp_path) -> dict:
    """saved_model_cli_run's numeric outputs read back exactly from the .npy files it writes,
    by output key."""
    import numpy as np

    out_dir = tmp_path / "saved_model_cli_out"
    saved_model_cli_run(version_dir, signature, name, array, tmp_path, out_dir)
    return {f[:-len(".npy")]: np.load(out_dir / f) for f in os.listdir(out_dir)}


# The slow group runs two 2-worker clusters at once on 2 cores: a starved but healthy worker
# can miss TensorFlow's 10 s of coordination heartbeats, so cluster tests allow 60.
PATIENT_PEERS = "--peer_timeout_s=60"


def launch_two_workers(app_module: str, *args: str, timeout: float = 300):
    """`python -m launch.local --num_workers=2 -- python -m <app_module> args` on CPUs only,
    without an inherited TF_CONFIG, patient with heartbeats (PATIENT_PEERS); asserts it
    succeeded and returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "launch.local", "--num_workers=2", "--",
                           sys.executable, "-m", app_module, PATIENT_PEERS, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done

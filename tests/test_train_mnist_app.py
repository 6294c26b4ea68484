"""The MNIST app end to end on the 700-image fixture: training, resume, outputs, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURE_MNIST, REPO, run_app, run_in_process
from suite.runtime.config import RuntimeConfig
from suite.tasks.mnist import MnistTask

FIXTURE_FLAGS = [f"--data_dir={FIXTURE_MNIST}", "--noverify_checksums"]


def flags_for(tmp_path, **kw) -> list[str]:
    values = dict(model_dir=str(tmp_path / "run"), batch_size=50, epochs=2, steps_per_epoch=4,
                  export=False, seed=0)
    values.update(kw)
    return [f"--{k}={v}" if not isinstance(v, bool) else f"--{'' if v else 'no'}{k}"
            for k, v in values.items()]


def run_mnist(tmp_path, data, strategy=None, **kw) -> dict:
    return run_in_process(MnistTask, *flags_for(tmp_path, **kw), data_override=data,
                          strategy_override=strategy)


def history(model_dir):
    """Epoch numbers logged, a repeated (re-run) epoch counted once."""
    from suite.viz.plots import read_history

    return [str(int(e)) for e in read_history(os.path.join(model_dir, "history.csv"))["epoch"]]


def test_held_out_training_images_choose_the_model_the_test_set_scores_once(tmp_path,
                                                                           mnist_small):
    """The first 1/12 of the training images (5,000 of MNIST's 60,000; 41 of the fixture's
    500) are held out: they validate every epoch and choose best.keras, and the test images
    score that model once, at the end. --validation=test is the book's way: the test set
    every epoch, the last epoch reported."""
    from suite.viz.plots import read_history

    results = run_mnist(tmp_path, mnist_small, epochs=3, steps_per_epoch=10)
    chosen = results["selection"]
    assert chosen["validation_split"] == "the first 41 training images"
    assert chosen["model"] == "best" and chosen["metric"] == "val_accuracy"
    curves = read_history(str(tmp_path / "run" / "history.csv"))
    assert chosen["value"] == pytest.approx(max(curves["val_accuracy"]))
    assert curves["val_accuracy"][chosen["epoch"] - 1] == pytest.approx(chosen["value"])
    best = keras.saving.load_model(str(tmp_path / "run" / "checkpoints" / "best.keras"))
    (_, _), (x_test, y_test) = mnist_small
    scored = np.mean(best.predict(x_test.astype("float32"), verbose=0).argmax(-1) == y_test)
    assert results["test_accuracy"] == pytest.approx(scored)
    book = run_in_process(MnistTask, *flags_for(tmp_path / "book", epochs=1), "--validation=test",
                          data_override=mnist_small)
    assert book["selection"] == {"model": "last", "validation_split": "the 200 test images"}
    assert read_history(str(tmp_path / "book" / "run" / "history.csv"))["val_accuracy"] == [
        pytest.approx(book["test_accuracy"])]


def test_training_lowers_the_loss_and_writes_every_output(tmp_path, mnist_small):
    model_dir = str(tmp_path / "run")
    results = run_mnist(tmp_path, mnist_small, epochs=3, steps_per_epoch=30, learning_rate=2e-3)
    with open(os.path.join(model_dir, "history.csv")) as f:
        rows = [line.split(",") for line in f.read().split()]
    # val_loss: inference mode, free of the dropout noise in the training loss
    loss = [float(r[rows[0].index("val_loss")]) for r in rows[1:]]
    assert len(loss) == 3 and loss[0] > loss[1] > loss[2] and loss[-1] < 0.85 * loss[0]
    assert results["status"] == "completed" and 0.5 < results["test_accuracy"] <= 1
    for name in ("learning_curves.png", "misclassified.png", "confusion_matrix.png",
                 "results.json", "run.json", "flags.txt", "checkpoints/best.keras",
                 "checkpoints/last.keras", "checkpoints/last.json", "backup/state.json"):
        assert os.path.getsize(os.path.join(model_dir, name)) > 0, name
    for name in ("learning_curves.png", "confusion_matrix.png"):
        with open(os.path.join(model_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(os.path.join(model_dir, "logs"))  # TensorBoard
    saved = json.load(open(os.path.join(model_dir, "results.json")))
    assert saved["test_accuracy"] == results["test_accuracy"]
    assert len(saved["confusion_matrix"]) == 10 and saved["test_top5_accuracy"] >= saved[
        "test_accuracy"]
    # The accuracy the model has on training images (inference mode), beside dropout mode's.
    assert {"accuracy", "inference_accuracy", "inference_loss"} <= set(rows[0])
    inference = [float(r[rows[0].index("inference_accuracy")]) for r in rows[1:]]
    training_mode = [float(r[rows[0].index("accuracy")]) for r in rows[1:]]
    assert inference[-1] > training_mode[-1]  # the book's dropout on the logits halves it
    run = json.load(open(os.path.join(model_dir, "run.json")))
    assert (run["app"], run["task"], run["name"]) == ("suite.tasks.mnist", "MnistTask", "mnist")
    assert run["export_metadata"]["class_names"] == [str(d) for d in range(10)]


def test_rerun_resumes_at_the_next_epoch_and_a_finished_run_is_not_retrained(tmp_path, mnist_small):
    run_mnist(tmp_path, mnist_small, epochs=1)
    assert history(str(tmp_path / "run")) == ["0"]
    run_mnist(tmp_path, mnist_small, epochs=3)
    assert history(str(tmp_path / "run")) == ["0", "1", "2"]
    model = keras.saving.load_model(str(tmp_path / "run" / "checkpoints" / "last.keras"))
    assert int(model.optimizer.iterations.numpy()) == 3 * 4
    again = run_mnist(tmp_path, mnist_small, epochs=3)
    assert history(str(tmp_path / "run")) == ["0", "1", "2"] and again["status"] == "completed"


def _start_app(model_dir, *extra):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen(
        [sys.executable, "-m", "apps.train_mnist", f"--model_dir={model_dir}", "--batch_size=10",
         "--steps_per_epoch=40", "--noexport", *FIXTURE_FLAGS, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _state(model_dir):
    path = os.path.join(model_dir, "backup", "state.json")
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def _epoch_step(model_dir):
    state = _state(model_dir) or {}
    return state.get("epoch"), state.get("step")


@pytest.mark.slow
def test_kill_9_then_sigterm_then_a_rerun_lose_no_epoch_and_no_step(tmp_path, capsys):
    """kill -9 mid-epoch: the rerun resumes from the last backup (every 5 steps here), no
    finished epoch lost; SIGTERM: the exact step is saved and the rerun finishes that epoch.
    Optimizer steps end at epochs x steps."""
    model_dir = str(tmp_path / "run")
    args = ("--epochs=3", "--backup_every_steps=5")
    proc = _start_app(model_dir, *args)
    _wait_for(lambda: (_state(model_dir) or {}).get("epoch", 0) >= 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _epoch_step(model_dir)  # backups every 5 steps: maybe mid-epoch
    done = killed_at[0]
    assert 1 <= done < 3

    proc = _start_app(model_dir, *args)
    _wait_for(lambda: _epoch_step(model_dir) > killed_at, proc)  # training again, past it
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output
    assert (f"Resuming from the backup in {model_dir}/backup: epoch {done + 1}, "
            f"step {killed_at[1]}") in output
    assert "SIGTERM received" in output and "run the same command again" in output
    # flags.txt replays with --flagfile: the app's flags, none of TensorFlow's or absl's
    from conftest import parse_app_flags

    replay = parse_app_flags(MnistTask, f"--flagfile={model_dir}/flags.txt")
    assert replay["backup_every_steps"].value == 5 and replay["steps_per_epoch"].value == 40
    epoch, step = _epoch_step(model_dir)
    assert killed_at < (epoch, step) and step < 40 and epoch < 3

    capsys.readouterr()
    results = run_in_process(MnistTask, f"--model_dir={model_dir}", "--batch_size=10",
                             "--steps_per_epoch=40", "--noexport", "--epochs=3", *FIXTURE_FLAGS)
    assert results["status"] == "completed"
    out = capsys.readouterr().out
    assert f"Resuming from the backup in {model_dir}/backup: epoch {epoch + 1}, step {step}." in out
    assert history(model_dir) == ["0", "1", "2"]  # the cut epochs are logged once each
    model = keras.saving.load_model(os.path.join(model_dir, "checkpoints", "last.keras"))
    assert int(model.optimizer.iterations.numpy()) == 3 * 40  # not one step more or less


def test_non_finite_loss_stops_keeps_the_last_good_state_and_fails(tmp_path, mnist_small):
    from suite.runtime.devices import setup_runtime
    from suite.runtime.training import RunPaths, fit_resumable

    runtime = setup_runtime("auto", "float32", 0, False)
    (x, y), _ = mnist_small
    good = tf.data.Dataset.from_tensor_slices((x[:200].astype("float32"), y[:200])).batch(50)
    poisoned = good.map(lambda a, b: (a * np.float32("nan"), b))
    train_ds = good.concatenate(poisoned).repeat()  # epoch 1 finite, epoch 2 NaN
    model = train_mnist_model()
    model_dir = str(tmp_path / "run")
    paths = RunPaths.for_role(model_dir, runtime)
    outcome = fit_resumable(model, train_ds, None, epochs=3, steps_per_epoch=4,
                            config=RuntimeConfig(model_dir), runtime=runtime, paths=paths)
    assert outcome.status == "diverged" and outcome.exit_code == 1
    assert "non-finite loss at epoch 2" in outcome.message
    assert _epoch_step(model_dir) == (1, 0)
    assert history(model_dir) == ["0"]  # the diverged epoch is not logged
    last = keras.saving.load_model(os.path.join(paths.checkpoints, "last.keras"))
    assert all(np.isfinite(w).all() for w in last.get_weights())


def test_a_signal_after_the_last_check_still_exits_with_its_code_and_training_saved(
        tmp_path, mnist_small):
    """SIGTERM during the last epoch's end-of-epoch work (after the last step's check) used to
    be swallowed: the run went on to evaluate and a scheduler killed it unrequeued. Now it
    ends with 143, training saved, and the rerun has nothing left to train."""
    import signal

    from suite.runtime.devices import setup_runtime
    from suite.runtime.training import RunPaths, fit_resumable

    runtime = setup_runtime("auto", "float32", 0, False)
    (x, y), _ = mnist_small
    train_ds = tf.data.Dataset.from_tensor_slices((x[:200].astype("float32"), y[:200])).batch(
        50).repeat()
    late = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch == 1 and os.kill(os.getpid(), signal.SIGTERM))
    model_dir = str(tmp_path / "run")
    paths = RunPaths.for_role(model_dir, runtime)

    def fit(callbacks):
        return fit_resumable(train_mnist_model(), train_ds, None, epochs=2, steps_per_epoch=4,
                             config=RuntimeConfig(model_dir), runtime=runtime, paths=paths,
                             callbacks=callbacks)

    outcome = fit([late])
    assert outcome.status == "interrupted" and outcome.exit_code == 143, outcome
    assert "stopped by SIGTERM at epoch 3, step 0" in outcome.message
    assert _epoch_step(model_dir) == (2, 0) and history(model_dir) == ["0", "1"]
    again = fit([])
    assert again.status == "completed" and not again.trained_now


def train_mnist_model():
    # No ReLU between input and loss, so a NaN pixel reaches the loss (ReLU would eat it).
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_mirrored_over_two_logical_cpus_matches_one_device(two_cpu_strategy, tmp_path, mnist_small):
    """Same global batch and data order: 2 replicas end with the single device's weights."""
    (x, y), _ = mnist_small
    weights = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"),
                     two_cpu_strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            from suite.models.deep_convnet import build_deep_convnet

            model = build_deep_convnet(dropout_rate=0.0)
            model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        ds = tf.data.Dataset.from_tensor_slices((x[:200].astype("float32"), y[:200])).batch(50)
        model.fit(ds, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_the_app_runs_under_mirrored_strategy(two_cpu_strategy, tmp_path, mnist_small):
    strategy = two_cpu_strategy
    results = run_mnist(tmp_path, mnist_small, strategy=strategy, epochs=1)
    assert results["status"] == "completed" and results["replicas"] == 2


@pytest.mark.parametrize("args, message", [
    (["--batch_size=-1"], "--batch_size must be a positive integer"),
    (["--learning_rate=0"], "--learning_rate must be > 0"),
    (["--lr_schedule=step"], "--lr_schedule=step needs --lr_decay_epochs"),
    (["--lr_decay_epochs=ten"], "--lr_decay_epochs must be a comma-separated list"),
    (["--strategy=horovod"], "value should be one of <auto|one_device|mirrored|multi_worker>"),
    (["--ensemble_size=0"], "--ensemble_size must be >= 1"),
    (["--init_weights=/no/such.pkl"], "--init_weights must name an existing pickle file"),
])
def test_bad_flags_fail_before_any_work_with_a_message_naming_the_flag(tmp_path, args, message):
    out = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run", *args, timeout=60)
    assert out.returncode == 2, out.stderr  # bad input, as launch/README's table says; 1: a crash
    assert message in out.stderr
    assert not os.path.exists(tmp_path / "run")


def test_unknown_flags_missing_flagfiles_and_stray_words_exit_2_in_one_line(tmp_path):
    for args, message in [(["--epochz=3"], "Unknown command line flag 'epochz'"),
                          ([f"--flagfile={tmp_path}/none.flags"], "none.flags"),
                          (["--epochs=1", "extra"], "error: unexpected arguments: extra")]:
        out = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run", *args, timeout=60)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) <= 3, out.stderr  # no --help dump
    assert not os.path.exists(tmp_path / "run")


def _export_versions(model_dir):
    return sorted(os.listdir(os.path.join(model_dir, "export", "mnist")), key=int)


def test_an_export_cut_short_is_written_by_the_rerun_and_an_identical_one_is_not(tmp_path,
                                                                             mnist_small):
    model_dir = str(tmp_path / "run")
    # validation=test serves the last epoch's model, so epoch 2 changes what is served (under
    # the held-out validation epoch 1 may stay the best: then nothing is to be exported again).
    first = run_mnist(tmp_path, mnist_small, epochs=1, export=True, validation="test")
    assert _export_versions(model_dir) == ["1"]
    # Training goes on to epoch 2, but the run ends before its export (here --noexport; a
    # signal during the final evaluation or a kill leaves the same folder).
    run_mnist(tmp_path, mnist_small, epochs=2, validation="test")
    # The rerun has nothing to train, yet the export named in results.json holds epoch 1.
    again = run_mnist(tmp_path, mnist_small, epochs=2, export=True, validation="test")
    assert again["export"] != first["export"] and _export_versions(model_dir) == ["1", "2"]
    served = tf.saved_model.load(again["export"]).signatures["serving_default"]
    last = keras.saving.load_model(os.path.join(model_dir, "checkpoints", "last.keras"))
    (_, _), (x_test, _) = mnist_small
    images = x_test[:8].astype("float32")
    np.testing.assert_allclose(served(image=tf.constant(images))["probabilities"].numpy(),
                               last.predict(images, verbose=0), atol=1e-5)
    run_mnist(tmp_path, mnist_small, epochs=2, export=True, validation="test")  # nothing new
    assert _export_versions(model_dir) == ["1", "2"]


def test_a_rerun_that_would_give_the_weights_another_meaning_is_refused(tmp_path, mnist_small):
    import hashlib

    model_dir = tmp_path / "run"
    run_mnist(tmp_path, mnist_small, epochs=1)

    def saved():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.rglob("*")
                if p.is_file() and p.name != ".run.lock"}

    before = saved()
    with pytest.raises(ValueError, match=r"holds a run whose models differ from this command's "
                                         r"\(models: \[\"deep_convnet\"\] there"):
        run_mnist(tmp_path, mnist_small, epochs=2, ensemble_size=2)
    assert json.loads((model_dir / "run.json").read_text())["initial_weights"] is None
    run_json = json.loads((model_dir / "run.json").read_text())
    (model_dir / "run.json").write_text(json.dumps({**run_json, "initial_weights": "/a.pkl"}))
    before = saved()
    write_book_params(tmp_path / "book.pkl")
    with pytest.raises(ValueError, match=r"initial_weights differ from this command's "
                                         r"\(initial_weights: \"/a\.pkl\" there, \"/.*now\)"):
        run_mnist(tmp_path, mnist_small, epochs=2, init_weights=str(tmp_path / "book.pkl"))
    (model_dir / "results.json").write_text("[]")
    before[model_dir / "results.json"] = hashlib.sha256(b"[]").hexdigest()
    with pytest.raises(ValueError, match=r"results\.json is damaged \(not a JSON object\); "
                                         "move it aside"):
        run_mnist(tmp_path, mnist_small, epochs=2)
    assert saved() == before  # nothing trained, nothing rewritten


def test_bad_data_dir_is_one_clear_line_and_exit_code_2(tmp_path):
    out = run_app("apps.train_mnist", f"--model_dir={tmp_path}/run", f"--data_dir={tmp_path}",
                  timeout=120)
    assert out.returncode == 2
    assert "error:" in out.stderr and "train-images-idx3-ubyte.gz is missing" in out.stderr
    assert "Traceback" not in out.stderr


def test_ensemble_trains_each_member_and_serves_their_average(tmp_path, mnist_small):
    results = run_mnist(tmp_path, mnist_small, epochs=1, export=True, ensemble_size=2)
    (_, _), (x_test, y_test) = mnist_small
    members = [keras.saving.load_model(str(tmp_path / "run" / f"member-{k}" / "checkpoints" /
                                           "last.keras")) for k in range(2)]
    probs = [m.predict(x_test.astype("float32"), verbose=0) for m in members]
    assert not np.allclose(probs[0], probs[1])  # different seeds, different members
    mean = np.mean(probs, axis=0)
    assert results["ensemble_size"] == 2 and len(results["member_test_accuracies"]) == 2
    assert results["member_epochs_chosen"] == [1, 1]  # each member as its validation chose it
    assert results["test_accuracy"] == pytest.approx(np.mean(mean.argmax(-1) == y_test))
    assert results["export"].endswith(os.path.join("export", "mnist", "1"))
    served = tf.saved_model.load(results["export"]).signatures["serving_default"]
    out = served(image=tf.constant(x_test[:16].astype("float32")))
    np.testing.assert_allclose(out["probabilities"].numpy(), mean[:16], atol=1e-5)


def write_book_params(path) -> dict:
    """Random parameters in the book's pickle format (W1..W8, b1..b8), He-scaled."""
    import pickle

    rng = np.random.default_rng(0)
    shapes = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3),
              "W4": (32, 32, 3, 3), "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3),
              "W7": (1024, 50), "W8": (50, 10)}
    params = {}
    for i, (name, shape) in enumerate(shapes.items(), start=1):
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        params[name] = rng.normal(0, np.sqrt(2 / fan_in), shape)
        params[f"b{i}"] = rng.normal(0, 0.1, shape[0] if len(shape) == 4 else shape[1])
    with open(path, "wb") as f:
        pickle.dump(params, f)
    return params


def test_book_weights_with_zero_epochs_are_only_evaluated(tmp_path, mnist_small):
    from suite.interop.book import import_book_params
    from suite.models.deep_convnet import build_deep_convnet

    path = tmp_path / "params.pkl"
    params = write_book_params(path)
    results = run_mnist(tmp_path, mnist_small, epochs=0, init_weights=str(path), export=True)
    reference = build_deep_convnet()
    import_book_params(reference, params)
    (_, _), (x_test, y_test) = mnist_small
    expected = np.mean(reference.predict(x_test.astype("float32"), verbose=0).argmax(-1) == y_test)
    assert results["test_accuracy"] == pytest.approx(expected)
    assert not os.path.exists(tmp_path / "run" / "history.csv")  # nothing was trained
    # The evaluated model is left where apps.export, --init_from and the precision report look.
    last = keras.saving.load_model(str(tmp_path / "run" / "checkpoints" / "last.keras"))
    images = x_test[:16].astype("float32")
    np.testing.assert_allclose(last.predict(images, verbose=0),
                               reference.predict(images, verbose=0), atol=1e-6)
    from suite.tasks.runs import export_run

    assert export_run(str(tmp_path / "run")).endswith(os.path.join("mnist", "2"))


@pytest.mark.slow
def test_exports_serve_what_keras_predicts_through_saved_model_cli(tmp_path, mnist_small):
    """The app's export and a re-export by apps.export (a fresh process that must find the
    custom BookDropout layer) both give Keras's probabilities (the re-export through
    saved_model_cli, the first in this process)."""
    import re
    import shutil

    model_dir = str(tmp_path / "run")
    results = run_mnist(tmp_path, mnist_small, epochs=1, export=True)
    out = run_app("apps.export", f"--model_dir={model_dir}", timeout=180)
    assert out.returncode == 0, out.stderr
    (_, _), (x_test, _) = mnist_small
    images = x_test[:3].astype("float32")
    np.save(tmp_path / "digits.npy", images)
    model = keras.saving.load_model(os.path.join(model_dir, "checkpoints", "last.keras"))
    expected = model.predict(images, verbose=0)
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable)) or "saved_model_cli"
    served = tf.saved_model.load(results["export"]).signatures["serving_default"]
    np.testing.assert_allclose(served(image=tf.constant(images))["probabilities"].numpy(),
                               expected, atol=1e-5)
    for version_dir in (os.path.join(model_dir, "export", "mnist", "2"),):
        run = subprocess.run([cli, "run", "--dir", version_dir, "--tag_set", "serve",
                              "--signature_def", "serving_default",
                              f"--inputs=image={tmp_path / 'digits.npy'}"],
                             capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        block = run.stdout[run.stdout.index("probabilities"):]
        numbers = [float(v) for v in re.findall(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?", block)][:30]
        np.testing.assert_allclose(np.array(numbers).reshape(3, 10), expected, atol=1e-5)
    again = run_mnist(tmp_path, mnist_small, epochs=1, export=True)  # finished: not retrained
    assert again["export"] == results["export"]
    assert sorted(os.listdir(os.path.join(model_dir, "export", "mnist"))) == ["1", "2"]


FAST_EPOCHS = 12  # apps/flags/mnist_fast.flags


def test_every_mnist_preset_parses_and_starts_with_its_command():
    presets = sorted(f for f in os.listdir(os.path.join(REPO, "apps", "flags"))
                     if f.startswith("mnist"))
    assert presets == ["mnist.flags", "mnist_augment.flags", "mnist_ensemble.flags",
                       "mnist_fast.flags", "mnist_fast_float32.flags", "mnist_smoke.flags"]
    code = ("import sys; from absl import flags; from suite.runtime.flags import define_flags\n"
            "from suite.tasks.mnist import MnistConfig\n"
            "for p in sys.argv[1:]:\n"
            "    F = flags.FlagValues(); define_flags(F, MnistConfig)\n"
            "    F(['x', '--flagfile=' + p])\n"
            "    print(p, F.epochs, F.augment, F.ensemble_size, F.dropout, F.lr_schedule, F.precision,\n"
            "          F.learning_rate, F.warmup_epochs)\n")
    out = subprocess.run([sys.executable, "-c", code, *[f"apps/flags/{p}" for p in presets]],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:6] == [
        "apps/flags/mnist.flags 20 False 1 book constant auto 0.001 0",
        "apps/flags/mnist_augment.flags 40 True 1 inverted cosine auto 0.001 0",
        "apps/flags/mnist_ensemble.flags 40 True 5 inverted cosine auto 0.001 0",
        f"apps/flags/mnist_fast.flags {FAST_EPOCHS} False 1 book cosine fastest 0.001 0",
        "apps/flags/mnist_fast_float32.flags 5 False 1 book cosine float32 0.003 1",
        "apps/flags/mnist_smoke.flags 2 False 1 book constant auto 0.001 0"]
    for p in presets:
        with open(os.path.join(REPO, "apps", "flags", p)) as f:
            assert f.readline().startswith(f"# python -m apps.train_mnist --flagfile=apps/flags/{p}")

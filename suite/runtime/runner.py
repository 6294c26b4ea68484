"""The one runner: takes a Task and a RuntimeConfig and does everything else, once.

    run_task(task, config)      in-process (tests inject data and a strategy)
    main(define_flags, make_task)   an app's absl entry point

Order, as the distributed runtime needs it: precision policy, strategy (before any other
TensorFlow op), seeds; then the run lock (one run per --model_dir; the chief holds it for a
multi-worker job), data, models in the strategy scope, run.json, training, evaluation,
export and results.json. Only the chief writes into --model_dir.
"""
from __future__ import annotations

import os
import sys
import time

from suite.runtime.flags import RuntimeConfig
from suite.runtime.task import Task

RUN_FILE = "run.json"


class Run:
    """What a Task sees of the runner while it runs: folders, models, and the ways to train."""

    def __init__(self, task: Task, config: RuntimeConfig, runtime, paths):
        self.task, self.config, self.runtime, self.paths = task, config, runtime, paths
        self.models: dict = {}
        self.served = None  # what is exported, once training is done

    @property
    def model(self):
        """The primary model: the first the task built."""
        return next(iter(self.models.values()))

    @property
    def is_chief(self) -> bool:
        return self.runtime.role.is_chief

    @property
    def model_dir(self) -> str:
        return self.config.model_dir

    @property
    def strategy(self):
        return self.runtime.strategy

    def output_path(self, name: str) -> str:
        """Where a figure or file named `name` goes: --model_dir on the chief, the worker's
        scratch folder elsewhere."""
        return os.path.join(self.paths.model_dir, name)

    def fit(self, model, train_data, validation_data, *, epochs: int, steps_per_epoch: int,
            subdir: str | None = None, callbacks=(), title: str | None = None):
        """The resumable fit of `model`; `subdir` gives it a folder of its own (an ensemble
        member's). Draws its learning curves when it completes."""
        from suite.runtime.training import RunPaths, fit_resumable

        paths = self.paths if subdir is None else RunPaths.for_role(
            os.path.join(self.config.model_dir, subdir), self.runtime)
        task = self.task
        try:
            outcome = fit_resumable(
                model, train_data, validation_data, epochs=epochs,
                steps_per_epoch=steps_per_epoch, config=self.config, runtime=self.runtime,
                paths=paths, monitor=task.best_checkpoint[0], mode=task.best_checkpoint[1],
                watched_losses=task.watched_losses, extra_callbacks=list(callbacks),
                get_extra=task.extra_state if task.has_extra_state() else None,
                set_extra=task.load_extra_state if task.has_extra_state() else None,
                training_subset=task.training_subset)
            self.finished_training(outcome, paths, title or f"{model.name} ({task.name})")
        finally:
            if subdir is not None:
                paths.cleanup()
        return outcome

    def loop(self, total_steps: int, steps_per_epoch: int, optimizers=None):
        """A custom training loop with the runner's resume, stops and records
        (suite.runtime.loop.TrainingLoop)."""
        from suite.runtime.loop import TrainingLoop

        return TrainingLoop(self, total_steps, steps_per_epoch, optimizers)

    def finished_training(self, outcome, paths, title: str) -> None:
        """Called by each fit and loop: draws the learning curves of a completed training."""
        if outcome.status != "completed" or not self.is_chief or not os.path.exists(
                paths.history_csv):
            return
        from suite.viz import plots

        plots.plot_learning_curves(plots.read_history(paths.history_csv),
                                   os.path.join(paths.model_dir, "learning_curves.png"),
                                   title=title, validation_label=self.task.validation_label)


def _app_module(task: Task) -> str | None:
    """The importable module defining the task's class (the app run with python -m)."""
    module = type(task).__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return spec.name if spec is not None else None
    return module


def _write_run_file(run: Run, flags_text: str | None) -> None:
    from suite.runtime.backup import atomic_write_json
    from suite.runtime.run_lock import command_line

    task = run.task
    atomic_write_json(os.path.join(run.model_dir, RUN_FILE), {
        "app": _app_module(task), "task": type(task).__qualname__, "name": task.name,
        "models": list(run.models), "export_metadata": task.export_metadata(),
        "export_checkpoint": task.export_checkpoint, "initial_weights": _initial_weights(task),
        "command": command_line(),
    })
    if flags_text is not None:
        with open(os.path.join(run.model_dir, "flags.txt.tmp"), "w") as f:
            f.write(flags_text)
        os.replace(os.path.join(run.model_dir, "flags.txt.tmp"),
                   os.path.join(run.model_dir, "flags.txt"))


# What gives a folder's trained weights their meaning: a rerun that resumes them must agree.
MEANING = ("task", "models", "initial_weights", "class_names", "num_classes", "vocabulary",
           "start_id", "end_id", "env", "observation_shape", "num_actions", "latent_dim",
           "channels")


def _initial_weights(task: Task) -> str | None:
    source = task.initial_weights
    return os.path.abspath(source) if source and os.path.exists(source) else source


def _meaning(run_file: dict) -> dict:
    return {k: v for k, v in {**(run_file.get("export_metadata") or {}), **run_file}.items()
            if k in MEANING}


_JSON = {dict: "object", str: "string"}


def read_run_file(model_dir: str) -> dict | None:
    """run.json of `model_dir` (None where there is none), checked to be what the runner writes:
    the one reader of the rerun's check, apps.export and the precision report."""
    import json

    path = os.path.join(model_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    fix = "move it aside (the next training run in that folder writes it anew)"
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {fix}.") from None
    if not isinstance(run, dict):
        raise ValueError(f"{path} is not a JSON object; {fix}.")
    for field, kind in (("export_metadata", dict), ("name", str)):
        if run.get(field) is not None and not isinstance(run[field], kind):
            raise ValueError(f"{path}: {field!r} must be a JSON {_JSON[kind]}, got "
                             f"{run[field]!r}; {fix}, or fix it by hand.")
    return run


def _refuse_another_run(run: Run) -> None:
    """A rerun resumes the weights already in --model_dir: refuse one whose data or flags would
    give them another meaning (other classes or words, other models, other starting weights),
    before anything is trained or rewritten."""
    import json

    before = read_run_file(run.model_dir)
    if before is None:
        return
    task = run.task
    now = _meaning({"task": type(task).__qualname__, "models": list(run.models),
                    "initial_weights": _initial_weights(task),
                    "export_metadata": task.export_metadata()})
    before = _meaning(before)
    differ = [k for k in now if now[k] is not None and before.get(k) is not None
              and json.loads(json.dumps(now[k])) != before[k]]  # None: not known, or not asked
    if differ:
        def short(value):
            text = json.dumps(value)
            return text if len(text) <= 80 else text[:77] + "..."

        details = "; ".join(f"{k}: {short(before[k])} there, {short(now[k])} now" for k in differ)
        raise ValueError(f"--model_dir={run.model_dir} holds a run whose {', '.join(differ)} "
                         f"differ from this command's ({details}). Resuming would give its "
                         "weights another meaning: use a new --model_dir, or rerun with the "
                         "data and flags it was trained with (its flags.txt).")


def _check_folder_flags(config: RuntimeConfig) -> None:
    for flag, path in (("model_dir", config.model_dir), ("export_dir", config.export_dir)):
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"--{flag}={path} is a file; give a folder (it is created if "
                             "missing)")


def run_task(task: Task, config: RuntimeConfig, strategy_override=None,
             flags_text: str | None = None) -> dict:
    """Runs `task` start to end; returns the results dict (also results.json), whose
    "exit_code" is the process's: 0, 1 (diverged), 130/143 (stopped by a signal, state saved).
    Bad input raises ValueError or RuntimeError before anything saved is touched."""
    started = time.monotonic()
    _check_folder_flags(config)
    # -- runtime: precision, strategy, seeds (before any other TensorFlow op) ----------------
    from suite.runtime.devices import setup_runtime

    runtime = setup_runtime(config.strategy, config.precision, config.seed, config.deterministic,
                            strategy_override, peer_timeout_s=config.peer_timeout_s)
    print(f"Runtime: {runtime.describe()}", flush=True)
    from suite.data.sharding import check_global_batch
    from suite.runtime.run_lock import RunLock
    from suite.runtime.training import RunPaths

    if task.global_batch_size is not None:
        check_global_batch(task.global_batch_size, runtime.num_replicas)
    # -- the run: one per folder ----------------------------------------------------------------
    lock = RunLock(config.model_dir).acquire() if runtime.role.is_chief else None
    paths = RunPaths.for_role(config.model_dir, runtime)
    run = Run(task, config, runtime, paths)
    try:
        return _run(run, flags_text, started)
    finally:
        paths.cleanup()
        if lock is not None:
            lock.release()


def _run(run: Run, flags_text: str | None, started: float) -> dict:
    task, config, runtime = run.task, run.config, run.runtime
    # -- data and models --------------------------------------------------------------------------
    task.load_data(run)
    with runtime.strategy.scope():
        built = task.build(run)
    run.models = dict(built) if isinstance(built, dict) else {"model": built}
    if not run.models:
        raise ValueError(f"{type(task).__name__}.build returned no model")
    from suite.runtime import evaluation

    results_path = os.path.join(config.model_dir, "results.json")
    earlier_results = evaluation.read_results(results_path) if run.is_chief else {}
    _refuse_another_run(run)

    # -- training ---------------------------------------------------------------------------------
    outcome = task.train(run)
    if run.is_chief:  # after training started cleanly: a refused resume changes no file
        _write_run_file(run, flags_text)
    if outcome.status != "completed":
        return outcome.results()
    served = run.served = _served_model(run)
    if run.is_chief:
        _leave_checkpoint(run, served, outcome.epochs_done)

    # -- evaluation -------------------------------------------------------------------------------
    from suite.runtime.startup import onednn_enabled

    results = earlier_results
    results.update({
        "status": "completed", "exit_code": 0, "task": type(task).__name__, "name": task.name,
        "seed": config.seed, "precision": runtime.precision, "replicas": runtime.num_replicas,
        "strategy": type(runtime.strategy).__name__, "onednn": onednn_enabled(),
    })
    results.update(task.evaluate(run) or {})
    if "epochs" in results:  # what the evaluated model trained, not the flag of this rerun
        results["epochs"] = outcome.epochs_done
    if not run.is_chief:
        return results

    # -- export -----------------------------------------------------------------------------------
    signatures = type(task).serving_signatures(served, task.export_metadata())
    weights = evaluation.weights_fingerprint(served) if config.export and signatures else None
    if weights and not evaluation.export_is_current(
            results, weights, os.path.join(config.resolved_export_dir, task.name)):
        from suite.export.saved_model import write_saved_model

        metadata = {"model": served.name, "task": type(task).__name__,
                    **task.export_metadata()}
        results["export"] = os.path.abspath(write_saved_model(
            config.resolved_export_dir, task.name, signatures, metadata))
        results["export_weights"] = weights
        print(f"SavedModel: {results['export']}", flush=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    evaluation.write_results(results_path, results)
    return results


def _served_model(run: Run):
    """What is exported: the task's served model, or checkpoints/best.keras for a task that
    serves its best checkpoint (an RL policy: the last one may have collapsed)."""
    task = run.task
    best = os.path.join(os.path.dirname(run.paths.backup_source), "checkpoints", "best.keras")
    if task.export_checkpoint == "best" and os.path.isfile(best):
        from suite.models.registry import load_keras_file

        return load_keras_file(best, custom_objects=type(task).custom_objects())
    return task.served_model(run)


def _leave_checkpoint(run: Run, served, epochs_done: int) -> None:
    """checkpoints/last.keras holds the last trained state, for apps.export, --init_from and
    the precision report. Where training left none there (a run of 0 epochs, an imported
    model) or the served model is not the trained one (an ensemble's average), the served
    model is written there, and last.json says so ("served"), so a later run replaces it."""
    from suite.runtime.backup import atomic_write_json
    from suite.runtime.records import EpochCheckpoints, save_model_atomically

    checkpoints = EpochCheckpoints(run.paths.checkpoints, monitor=None)
    written_by_training = (os.path.isfile(checkpoints.last_path)
                           and not checkpoints.last_info().get("served"))
    if written_by_training or (run.task.export_checkpoint == "best" and served is not run.model):
        return
    from suite.runtime.backup import build_compiled_optimizer

    os.makedirs(checkpoints.directory, exist_ok=True)
    build_compiled_optimizer(served)  # its slots saved, so loading it does not warn
    save_model_atomically(served, checkpoints.last_path)
    atomic_write_json(os.path.join(checkpoints.directory, "last.json"),
                      {"epoch": epochs_done, "served": True})


# -- the absl entry point ---------------------------------------------------------------------
def _adopt_as_key_flags(fv, names) -> None:
    """--help lists the main module's key flags: make every flag the app defined one, the
    shared runtime/schedule/optimizer flags included."""
    main_module = sys.argv[0]
    for name in names:
        fv.register_key_flag_for_module(main_module, fv[name])


def _exit_cleanly_on_signals() -> None:
    """Outside training (start-up, evaluation, export) SIGTERM/SIGINT end the process at once
    with 143/130 and a line saying so, instead of killing it silently; during training the
    stop requests (suite.runtime.stopping) take over and save first."""
    import signal

    from suite.runtime.stopping import EXIT_CODES

    def leave(signum, frame):
        name = signal.Signals(signum).name
        print(f"\n{name} received outside training: nothing to save; exiting.", flush=True)
        sys.exit(EXIT_CODES[name])

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)


def main(define_flags, make_task, argv=None) -> None:
    """Defines the app's flags, parses them, runs its task and exits with the run's code.

    `define_flags(fv)` defines the app's flags into `fv`; `make_task(fv)` returns its Task from
    the parsed values. Bad input (flags, data, a locked or damaged folder) is one `error:` line
    (or a short block) on stderr and exit code 2, never a traceback; --verbosity=1 adds the
    traceback and TensorFlow's start-up lines.
    """
    from absl import app, flags, logging

    from suite.runtime.flags import parse_flags, usage_error

    fv = flags.FLAGS
    before = set(fv)
    define_flags(fv)
    app_flags = sorted(set(fv) - before)
    _adopt_as_key_flags(fv, app_flags)

    def _main(args):
        if len(args) > 1:
            usage_error(f"unexpected arguments: {' '.join(args[1:])}")
        _exit_cleanly_on_signals()
        verbose = fv["verbosity"].present
        if not verbose:  # TensorFlow's INFO lines drown the app's own
            logging.set_verbosity(logging.WARNING)
        from suite.runtime.flags import runtime_config
        from suite.runtime.startup import load_tensorflow

        load_tensorflow(quiet=not verbose)
        try:
            task = make_task(fv)
            # flags.txt replays with --flagfile: the app's flags only, not TensorFlow's or
            # absl's, which exist only when TensorFlow loaded before parsing.
            flags_text = "".join(f"{line}\n" for line in (fv[n].serialize() for n in app_flags)
                                 if line)
            results = run_task(task, runtime_config(fv), flags_text=flags_text)
        except (ValueError, RuntimeError, OSError) as e:  # DataError and the like
            # Bad input gets a clear message, not a traceback; nothing saved was touched.
            logging.debug("details", exc_info=True)
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        sys.exit(results["exit_code"])

    # Flag validators may import TensorFlow (model names, augmentations): load it quietly
    # first, unless --verbosity asks to see its start-up lines.
    if not any(a.startswith(("--verbosity", "-v")) for a in (argv or sys.argv)[1:]):
        from suite.runtime.startup import load_tensorflow

        load_tensorflow(quiet=True)
    app.run(_main, argv=argv, flags_parser=parse_flags)

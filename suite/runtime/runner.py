"""The one runner: takes a Task and a RuntimeConfig and does everything else, once.

    run_task(task, config)      in-process (tests inject data and a strategy)

The command line around it (flags, signals, exit codes) is suite.runtime.cli. Order, as the
distributed runtime needs it: precision policy, strategy (before any other TensorFlow op),
seeds; then the run lock (one run per model_dir; the chief holds it for a multi-worker job),
data, models in the strategy scope, run.json, training, evaluation, export and results.json.
Only the chief writes into model_dir.
"""
from __future__ import annotations

import os
import time

from suite.runtime import run_file
from suite.runtime.config import RuntimeConfig
from suite.runtime.run import Run


def _check_folders(config: RuntimeConfig) -> None:
    for field, path in (("model_dir", config.model_dir), ("export_dir", config.export_dir)):
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"`{field}={path}` is a file; give a folder (it is created if "
                             "missing)")


def run_task(task, config: RuntimeConfig, strategy_override=None,
             flags_text: str | None = None) -> dict:
    """Runs `task` (a suite.tasks.base.Task) start to end; returns the results dict (also
    results.json), whose "exit_code" is the process's: 0, 1 (diverged), 130/143 (stopped by a
    signal, state saved), 138 (a peer of a multi-worker run was lost, the last backup intact:
    suite.runtime.peers). Bad input raises ValueError or RuntimeError before anything saved is
    touched."""
    started = time.monotonic()
    _check_folders(config)
    # -- runtime: precision, strategy, seeds (before any other TensorFlow op) ----------------
    from suite.runtime.devices import setup_runtime

    runtime = setup_runtime(config.strategy, config.precision, config.seed, config.deterministic,
                            strategy_override, peer_timeout_s=config.peer_timeout_s)
    print(f"Runtime: {runtime.describe()}", flush=True)
    from suite.data.sharding import check_global_batch
    from suite.runtime.run_lock import RunLock
    from suite.runtime.stopping import finish_together
    from suite.runtime.training import RunPaths

    if task.global_batch_size is not None:
        check_global_batch(task.global_batch_size, runtime.num_replicas)
    # -- the run: one per folder ----------------------------------------------------------------
    lock = RunLock(config.model_dir).acquire() if runtime.role.is_chief else None
    paths = RunPaths.for_role(config.model_dir, runtime)
    run = Run(task, config, runtime, paths)
    try:
        results = _run(run, flags_text, started)
        finish_together(runtime)
        return results
    except Exception as error:  # noqa: BLE001  (a lost peer is an outcome; the rest re-raised)
        from suite.runtime.peers import EXIT_LOST_PEER, is_lost_peer, lost_peer_message

        if not is_lost_peer(error, runtime.role.num_workers):
            raise
        message = lost_peer_message(error, runtime.role, _cluster_spec(runtime),
                                    paths.backup_source)
        print(message, flush=True)
        return {"status": "lost_peer", "exit_code": EXIT_LOST_PEER, "message": message}
    finally:
        paths.cleanup()
        if lock is not None:
            lock.release()


def _cluster_spec(runtime) -> dict:
    resolver = getattr(runtime.strategy, "cluster_resolver", None)
    try:
        return resolver.cluster_spec().as_dict() if resolver is not None else {}
    except Exception:  # noqa: BLE001  (only for naming the peer's address)
        return {}


def _run(run: Run, flags_text: str | None, started: float) -> dict:
    task, config, runtime = run.task, run.config, run.runtime
    # -- data and models --------------------------------------------------------------------------
    task.load_data(run)
    with runtime.strategy.scope():
        built = task.build(run)
    run.models = dict(built) if isinstance(built, dict) else {"model": built}
    if not run.models:
        raise ValueError(f"{type(task).__name__}.build returned no model")
    earlier_results = run_file.read_results(run.run_dir) if run.is_chief else {}
    description = run_file.describe(task, list(run.models))
    run_file.refuse_another_meaning(run.run_dir, description,
                                    run_file.RUNNER_KEYS + tuple(task.meaning_keys))

    # -- training ---------------------------------------------------------------------------------
    outcome = task.train(run)
    if run.is_chief:  # after training started cleanly: a refused resume changes no file
        run_file.write_run_file(run.run_dir, description, flags_text)
    if outcome.status != "completed":
        return outcome.results()
    served = run.served = task.served_model(run)
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
    if "epochs" in results:  # what the evaluated model trained, not the option of this rerun
        results["epochs"] = outcome.epochs_done
    results["selection"] = task.selection(run)
    if not run.is_chief:
        return results

    # -- export -----------------------------------------------------------------------------------
    if config.export and task.exports:
        weights = run_file.weights_fingerprint(served)
        export_base = os.path.join(config.resolved_export_dir, task.name)
        if not run_file.export_is_current(results, weights, export_base):
            results["export"] = os.path.abspath(type(task).write_export(
                served, task.export_metadata(), config.resolved_export_dir, task.name))
            results["export_weights"] = weights
            print(f"SavedModel: {results['export']}", flush=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    run_file.write_results(run.run_dir, results)
    return results


def _leave_checkpoint(run: Run, served, epochs_done: int) -> None:
    """checkpoints/last.keras holds the last trained state, for apps.export, init_from and the
    precision report. Where training left none there (a run of 0 epochs, an imported model) or
    the served model is not the trained one (an ensemble's average), the served model is
    written there, and last.json says so ("served"), so a later run replaces it."""
    from suite.runtime.backup import build_compiled_optimizer
    from suite.runtime.records import EpochCheckpoints, save_model_atomically

    checkpoints = EpochCheckpoints(run.paths.checkpoints, monitor=None)
    written_by_training = (os.path.isfile(checkpoints.last_path)
                           and not checkpoints.last_info().get("served"))
    if written_by_training or (run.task.export_checkpoint == "best" and served is not run.model):
        return
    os.makedirs(checkpoints.directory, exist_ok=True)
    build_compiled_optimizer(served)  # its slots saved, so loading it does not warn
    save_model_atomically(served, checkpoints.last_path)
    run_file.atomic_write_json(os.path.join(checkpoints.directory, "last.json"),
                               {"epoch": epochs_done, "served": True})

"""The files that say what a run is: run.json (what made it), results.json (what it measured).

run.json names the Task that made the run, its models, its export metadata (class names,
vocabulary, ...), the checkpoint it exports and the weights it started from; apps.export, the
precision report and a rerun read it back. A rerun that would give the folder's trained weights
another meaning (other classes, another vocabulary, other models or starting weights: the
runner's RUNNER_KEYS plus the Task's `meaning_keys`) is refused before anything is trained.
results.json holds the evaluation's numbers and the fingerprint of the exported weights, so a
rerun knows whether the export is current.
"""
from __future__ import annotations

import json
import os

RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
FLAGS_FILE = "flags.txt"
RUNNER_KEYS = ("task", "models", "initial_weights")  # give every run its meaning; Tasks add theirs
_FIX = "move it aside (the next training run in that folder writes it anew)"
_JSON = {dict: "object", str: "string"}


def atomic_write_json(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def task_module(task) -> str | None:
    """The importable module defining the task's class (its app, when run with python -m)."""
    import sys

    module = type(task).__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return spec.name if spec is not None else None
    return module


def initial_weights(task) -> str | None:
    source = task.initial_weights
    return os.path.abspath(source) if source and os.path.exists(source) else source


def describe(task, model_names: list[str]) -> dict:
    """What run.json says of a run of `task` with these models (the command added on write)."""
    return {"app": task_module(task), "task": type(task).__qualname__, "name": task.name,
            "models": list(model_names), "export_metadata": task.export_metadata(),
            "export_checkpoint": task.export_checkpoint,
            "initial_weights": initial_weights(task)}


def write_run_file(run_dir: str, description: dict, flags_text: str | None) -> None:
    """run.json (and flags.txt, the command's flags, which replay with --flagfile)."""
    from suite.runtime.run_lock import command_line

    atomic_write_json(os.path.join(run_dir, RUN_FILE), {**description, "command": command_line()})
    if flags_text is not None:
        tmp = os.path.join(run_dir, f"{FLAGS_FILE}.tmp")
        with open(tmp, "w") as f:
            f.write(flags_text)
        os.replace(tmp, os.path.join(run_dir, FLAGS_FILE))


def read_run_file(run_dir: str) -> dict | None:
    """run.json of `run_dir` (None where there is none), checked to be what the runner writes:
    the one reader of the rerun's check, apps.export and the precision report."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {_FIX}.") from None
    if not isinstance(run, dict):
        raise ValueError(f"{path} is not a JSON object; {_FIX}.")
    for field, kind in (("export_metadata", dict), ("name", str)):
        if run.get(field) is not None and not isinstance(run[field], kind):
            raise ValueError(f"{path}: {field!r} must be a JSON {_JSON[kind]}, got "
                             f"{run[field]!r}; {_FIX}, or fix it by hand.")
    return run


def meaning(run_file: dict, keys) -> dict:
    """The values of `keys` a run file holds, in its top level or its export metadata."""
    return {k: v for k, v in {**(run_file.get("export_metadata") or {}), **run_file}.items()
            if k in keys}


def refuse_another_meaning(run_dir: str, now: dict, keys) -> None:
    """A rerun resumes the weights already in `run_dir`: refuse one whose description `now`
    differs in a key of `keys` (other classes or words, other models, other starting weights),
    before anything is trained or rewritten."""
    before = read_run_file(run_dir)
    if before is None:
        return
    now, before = meaning(now, keys), meaning(before, keys)
    differ = [k for k in now if now[k] is not None and before.get(k) is not None
              and json.loads(json.dumps(now[k])) != before[k]]  # None: not known, or not asked
    if differ:
        def short(value):
            text = json.dumps(value)
            return text if len(text) <= 80 else text[:77] + "..."

        details = "; ".join(f"{k}: {short(before[k])} there, {short(now[k])} now" for k in differ)
        raise ValueError(f"`model_dir={run_dir}` holds a run whose {', '.join(differ)} differ "
                         f"from this command's ({details}). Resuming would give its weights "
                         "another meaning: use a new `model_dir`, or rerun with the data and "
                         "options it was trained with (its flags.txt).")


def write_results(run_dir: str, results: dict) -> None:
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_json(os.path.join(run_dir, RESULTS_FILE), results)


def read_results(run_dir: str) -> dict:
    """results.json of an earlier run, or {}; a damaged one is named before anything is
    trained over it."""
    path = os.path.join(run_dir, RESULTS_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is damaged ({e}); move it aside (a rerun writes it anew)") \
            from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); move it aside (a rerun "
                         "writes it anew)")
    return results


def weights_fingerprint(model) -> str:
    """sha256 of every weight's bytes, in order: what an export holds, without loading it."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def export_is_current(results: dict, weights: str, export_base: str) -> bool:
    """True when results.json names an export under `export_base` (export_dir/<name>) that
    still exists and holds these weights: a rerun of a finished training then adds no
    identical version, while one whose earlier end was cut short before the export, that
    imported other weights or serves another model does export."""
    export = results.get("export")
    return (bool(export) and os.path.isdir(export) and results.get("export_weights") == weights
            and os.path.dirname(os.path.abspath(export)) == os.path.abspath(export_base))


CHECKPOINTS = ("best", "last")


def exported_checkpoint(run_dir: str, run: dict, checkpoint: str | None = None) -> str:
    """The checkpoint a re-export takes: `checkpoint` when asked for, else the one the run's
    own export served (run.json's export_checkpoint): best.keras for a run that serves the
    model its validation chose, unless nothing chose one (a run of 0 epochs, a validation
    metric that never improved), where the run served last.keras, and so does the re-export."""
    if checkpoint is None:
        checkpoint = run.get("export_checkpoint") or "last"
        if checkpoint == "best" and not os.path.isfile(
                os.path.join(run_dir, "checkpoints", "best.keras")):
            checkpoint = "last"
    return checkpoint_path(run_dir, checkpoint)


def checkpoint_path(run_dir: str, checkpoint: str = "last") -> str:
    """<run_dir>/checkpoints/<checkpoint>.keras, or FileNotFoundError saying how to make it."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}; got {checkpoint!r}.")
    path = os.path.join(run_dir, "checkpoints", f"{checkpoint}.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No checkpoint at {path}. Train first, e.g. python -m apps.train_mnist "
            f"--model_dir={run_dir}, or point --model_dir at a finished training.")
    return path

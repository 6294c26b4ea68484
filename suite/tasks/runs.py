"""A finished run read back: the Task that made it, its checkpoint, its export again.

run.json names the Task class that made a run (suite.runtime.run_file); the class is found
among suite.tasks' modules by that name, so runs made before a Task moved (apps.train_mnist's
MnistTask, now suite.tasks.mnist's) still export. Nothing outside suite.tasks is imported.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil

from suite.runtime.run_file import RUN_FILE, checkpoint_path, exported_checkpoint, read_run_file


def read_run(run_dir: str) -> dict:
    """run.json of `run_dir`; for finished runs made before run.json existed, an image
    classifier with the class names results.json recorded."""
    run = read_run_file(run_dir)
    if run is not None:
        return run
    path = os.path.join(run_dir, RUN_FILE)
    checkpoint_path(run_dir, "last")  # no checkpoint at all: "Train first, ..."
    results_path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(results_path):
        raise FileNotFoundError(f"{path} is missing: the run in {run_dir} has not finished "
                                "its first training yet. Run the same training command again "
                                "(it resumes), then export.")
    with open(results_path) as f:
        results = json.load(f)
    return {"app": "suite.tasks.classification", "task": "ImageClassificationTask",
            "name": results.get("model"),
            "export_metadata": {"class_names": results.get("class_names")}}


def task_names() -> list[str]:
    """The modules of suite.tasks (each an application's Task, or pieces they share)."""
    import suite.tasks

    return sorted(m.name for m in pkgutil.iter_modules(suite.tasks.__path__))


def task_class(run: dict):
    """The Task class run.json names, found by its name among suite.tasks' modules (the
    module run.json recorded first: a run made there keeps its own)."""
    from suite.tasks.base import Task

    class_name = run.get("task")
    if not (isinstance(class_name, str) and class_name.isidentifier()):
        raise ValueError(f"run.json names an invalid task {class_name!r}")
    recorded = run.get("app")
    modules = [m for m in task_names() if m not in ("base", "runs")]
    if isinstance(recorded, str) and recorded.startswith("suite.tasks."):
        short = recorded.removeprefix("suite.tasks.")
        modules = [short] + [m for m in modules if m != short] if short in modules else modules
    for module in modules:
        cls = getattr(importlib.import_module(f"suite.tasks.{module}"), class_name, None)
        if isinstance(cls, type) and issubclass(cls, Task) and cls is not Task:
            return cls
    raise ValueError(f"run.json's task {class_name!r} (made by {recorded}) is none of suite.tasks' "
                     "Tasks; export it from the code that made it (Task.write_export), or "
                     "check that this is the suite version that trained it")


def export_run(run_dir: str, export_dir: str | None = None, name: str | None = None,
               version: int | None = None, checkpoint: str | None = None, cls=None) -> str:
    """Loads the run's checkpoint and exports it with its Task's signatures (`cls`: a Task
    class from elsewhere, e.g. an app of your own); returns the version folder."""
    run = read_run(run_dir)
    path = exported_checkpoint(run_dir, run, checkpoint)
    cls = cls or task_class(run)
    model = cls.load_checkpoint(path)
    return cls.write_export(model, run.get("export_metadata") or {},
                            export_dir or os.path.join(run_dir, "export"),
                            name or run.get("name") or model.name, version)

"""What a run records once per finished epoch: the history row and the model checkpoints.

Written the same way by `fit` (through suite.runtime.callbacks) and by a task's own loop
(suite.runtime.loop), and only for finished epochs: a run stopped by a signal mid-epoch logs
nothing for that epoch, and neither does an epoch whose loss went non-finite.

history.csv has one row per finished epoch, whatever happened: appending epoch e first drops
any row for e or later (a kill -9 between the history write and the backup write makes the
rerun repeat that epoch), and a new metric adds a column instead of a second header. The file
is rewritten through a temporary file and a rename, so it is never half-written.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time

import keras

from suite.runtime.run_file import atomic_write_json


def finite(logs: dict | None, keys=("loss",)) -> bool:
    """True unless one of `keys` in `logs` is a non-finite number."""
    for key in keys:
        value = (logs or {}).get(key)
        if value is not None and not math.isfinite(float(value)):
            return False
    return True


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class HistoryLog:
    """<model_dir>/history.csv: epoch (0-based, as Keras's CSVLogger wrote it) then metrics."""

    def __init__(self, path: str):
        self.path = path

    def rows(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def append(self, epoch: int, logs: dict) -> None:
        rows = [r for r in self.rows() if r.get("epoch", "").isdigit() and int(r["epoch"]) < epoch]
        rows.append({"epoch": str(epoch), **{k: repr(_number(v)) if isinstance(_number(v), float)
                                             else str(v) for k, v in sorted(logs.items())}})
        columns = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", newline="") as f:
            f.write(out.getvalue())
        os.replace(tmp, self.path)


def _beside(path: str) -> str:
    """Where a model file is written before os.replace moves it to `path`: the same folder,
    the name prefixed (Keras checks the suffix, so it stays last)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f"tmp-{name}")


def save_model_atomically(model: keras.Model, path: str) -> None:
    tmp = _beside(path)
    model.save(tmp, overwrite=True)
    os.replace(tmp, path)


class EpochCheckpoints:
    """checkpoints/last.keras every finished epoch, best.keras when `monitor` improves, and with
    `keep_every` k also epoch-NNN.keras every k-th epoch (with epoch-NNN.json: the epoch, when
    it ended, its logs), for curves of any data drawn after the run without choosing on it.

    Whole models (architecture, weights, optimizer), so `apps.export`, `--init_from` and the
    precision report load them in any process. last.json and best.json say which epoch each
    holds (and best's value), so a run can resume from last.keras if its backup is damaged.
    """

    def __init__(self, directory: str, monitor: str | None = "val_accuracy", mode: str = "max",
                 keep_every: int = 0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if keep_every < 0:
            raise ValueError(f"keep_every must be >= 0, got {keep_every}")
        self.directory, self.monitor, self.mode = directory, monitor, mode
        self.keep_every = keep_every
        self.last_path = os.path.join(directory, "last.keras")
        self.best_path = os.path.join(directory, "best.keras")
        self._best_json = os.path.join(directory, "best.json")
        self.best = None
        if monitor and os.path.exists(self._best_json):  # keep "best" meaningful across resumes
            try:
                with open(self._best_json) as f:
                    self.best = json.load(f).get(monitor)
            except (OSError, ValueError):
                self.best = None  # a damaged best.json: the next improvement rewrites it

    def _improved(self, value: float) -> bool:
        """At least as good as the best so far: on a tie (frequent with few validation
        examples) the model trained longer replaces the earlier one."""
        if self.best is None:
            return True
        return value >= self.best if self.mode == "max" else value <= self.best

    def save(self, model: keras.Model, epoch: int, logs: dict | None) -> None:
        """After epoch `epoch` (0-based) finished with `logs`."""
        os.makedirs(self.directory, exist_ok=True)
        save_model_atomically(model, self.last_path)
        atomic_write_json(os.path.join(self.directory, "last.json"), {"epoch": epoch + 1})
        if self.keep_every and (epoch + 1) % self.keep_every == 0:
            self._keep(epoch + 1, logs)
        value = (logs or {}).get(self.monitor) if self.monitor else None
        if value is not None and math.isfinite(float(value)) and self._improved(float(value)):
            self.best = float(value)
            save_model_atomically(model, self.best_path)
            atomic_write_json(self._best_json, {self.monitor: self.best, "epoch": epoch + 1})

    def _keep(self, epochs: int, logs: dict | None) -> None:
        kept = self.kept_path(epochs)
        tmp = _beside(kept)
        shutil.copyfile(self.last_path, tmp)  # last.keras holds this epoch: no second save
        os.replace(tmp, kept)
        atomic_write_json(kept[:-len(".keras")] + ".json", {
            "epoch": epochs, "saved_unix": time.time(),
            "logs": {k: _number(v) for k, v in (logs or {}).items()}})

    def kept_path(self, epochs: int) -> str:
        """Where `keep_every` keeps the model after `epochs` epochs."""
        return os.path.join(self.directory, f"epoch-{epochs:03d}.keras")

    def last_info(self) -> dict:
        """last.json: {"epoch": epochs in last.keras} (and "served": true when the runner left
        the served model there), {} when unreadable."""
        return self._read("last.json")

    def best_info(self) -> dict:
        """best.json: {<monitor>: its best value, "epoch": epochs in best.keras}, {} when
        missing or unreadable."""
        return self._read("best.json")

    def _read(self, name: str) -> dict:
        try:
            with open(os.path.join(self.directory, name)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def last_epoch(self) -> int | None:
        """Epochs finished in last.keras (from last.json), None when unknown."""
        try:
            return int(self.last_info()["epoch"])
        except (KeyError, ValueError, TypeError):
            return None

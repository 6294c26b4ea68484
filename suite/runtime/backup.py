"""The resume state of a run: every model, every optimizer and a task's extra state, saved as one.

    <backup_dir>/state.json        {"epoch": e, "step": s, "saved": "ckpt-<n>", "extra": {...},
                                    "arrays": [names in extra.npz]}
    <backup_dir>/ckpt-<n>/<model>.weights.h5     a model's weights and its optimizers' slots
    <backup_dir>/ckpt-<n>/<name>.optimizer.npz   an optimizer no model tracks (custom loops)
    <backup_dir>/ckpt-<n>/extra.npz              a task's arrays (a replay buffer, ...)

A save writes a new ckpt-<n> folder in full, then replaces state.json (the commit point: a
rename), then deletes older folders: a kill -9 at any instant leaves state.json naming a
complete checkpoint. Restoring needs every model and optimizer built first (Keras skips an
unbuilt optimizer's slots with only a warning; here that is an error). Backups of the earlier
single-file layout (latest.weights.h5 beside state.json) still restore.

A damaged backup (unreadable state.json, a missing or truncated weights or .npz file) raises
DamagedStateError naming the file; nothing is deleted, and the error says how to go on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
from typing import Callable

import keras
import numpy as np

from suite.errors import DamagedStateError, StateMismatchError
from suite.runtime.run_file import atomic_write_json

STATE_FILE = "state.json"
LEGACY_WEIGHTS = "latest.weights.h5"
_CKPT = re.compile(r"^ckpt-(\d+)$")


def optimizers_of(model: keras.Model) -> list[keras.optimizers.Optimizer]:
    """The optimizers a model's weights file holds: its compiled one and any in attributes
    (a GAN's d_optimizer and g_optimizer)."""
    found = []
    for value in [getattr(model, "optimizer", None), *vars(model).values()]:
        if isinstance(value, keras.optimizers.Optimizer) and all(value is not f for f in found):
            found.append(value)
    return found


def build_compiled_optimizer(model: keras.Model) -> None:
    """Creates the compiled optimizer's slots for the model's trainable weights, in the model's
    strategy scope (slots must mirror the weights), so a restore has somewhere to load them."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def _unbuilt(model: keras.Model) -> list[str]:
    return [type(o).__name__ for o in optimizers_of(model) if not o.built]


class ResumeState:
    """Saves and restores `models`, `optimizers` and `extra` state in `backup_dir`.

    `get_extra()` returns a dict of NumPy arrays and JSON-able values; `set_extra(dict)` takes
    the same back. `describe_damage` adds the ways forward to a DamagedStateError.
    """

    def __init__(self, backup_dir: str, models: dict[str, keras.Model],
                 optimizers: dict[str, keras.optimizers.Optimizer] | None = None,
                 get_extra: Callable[[], dict] | None = None,
                 set_extra: Callable[[dict], None] | None = None,
                 describe_damage: Callable[[str], str] | None = None):
        self.backup_dir = backup_dir
        self.models = models
        self.optimizers = optimizers or {}
        self.get_extra, self.set_extra = get_extra, set_extra
        self.describe_damage = describe_damage or (lambda what: what)
        self.state_path = os.path.join(backup_dir, STATE_FILE)

    # -- reading ------------------------------------------------------------------------------
    def _damaged(self, what: str) -> DamagedStateError:
        return DamagedStateError(self.describe_damage(
            f"the resume state in {self.backup_dir} is damaged: {what}"))

    def read(self) -> dict | None:
        """state.json as a dict, None when there is no backup yet."""
        if not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise self._damaged(f"{self.state_path} is not readable JSON ({e})") from e
        if not (isinstance(state, dict) and isinstance(state.get("epoch"), int)
                and isinstance(state.get("step"), int)):
            raise self._damaged(f"{self.state_path} lacks its integer 'epoch' and 'step'")
        return state

    def exists(self) -> bool:
        return os.path.exists(self.state_path)

    def _files(self, state: dict) -> str:
        saved = state.get("saved")
        if saved is None:  # the earlier layout: one weights file, one model
            return self.backup_dir
        if not isinstance(saved, str) or not _CKPT.match(saved):
            raise self._damaged(f"{self.state_path} names no checkpoint folder ({saved!r})")
        return os.path.join(self.backup_dir, saved)

    def restore(self) -> tuple[int, int] | None:
        """Loads the saved state into the (built) models, optimizers and extra state; returns
        (epoch, step), or None when there is no backup."""
        state = self.read()
        if state is None:
            return None
        folder = self._files(state)
        for name, model in self.models.items():
            build_compiled_optimizer(model)
            unbuilt = _unbuilt(model)
            if unbuilt:
                raise RuntimeError(f"cannot restore model {name!r}: its optimizer(s) {unbuilt} "
                                   "have no variables yet; build them (optimizer.build(...)) "
                                   "before restoring, e.g. in the model's compile().")
            path = (os.path.join(folder, LEGACY_WEIGHTS) if "saved" not in state
                    else os.path.join(folder, f"{name}.weights.h5"))
            self._load_weights(model, path)
        for name, optimizer in self.optimizers.items():
            self._load_optimizer(optimizer, os.path.join(folder, f"{name}.optimizer.npz"))
        if self.set_extra is not None:
            try:
                self.set_extra(self._load_extra(folder, state))
            except KeyError as e:  # an older backup, written before "arrays" was recorded
                raise self._damaged(f"{folder} lacks the task's saved {e}") from None
        return state["epoch"], state["step"]

    def _load_weights(self, model: keras.Model, path: str) -> None:
        if not os.path.isfile(path):
            raise self._damaged(f"{path} is missing")
        try:
            import h5py

            with h5py.File(path, "r"):
                pass
        except OSError as e:
            raise self._damaged(f"{path} is not a readable HDF5 file ({e})") from e
        try:
            model.load_weights(path)
        except Exception as e:  # noqa: BLE001 - Keras raises many kinds for a mismatch
            raise StateMismatchError(
                f"the backup {path} does not fit this model ({e}); it was written by a "
                f"different configuration (another model, size or optimizer). Use another "
                f"`model_dir`, or go back to the flags that run used.") from e

    def _read_npz(self, path: str, names=None) -> dict[str, np.ndarray]:
        """Every array of an .npz file (at least `names`); a missing, truncated or corrupt
        file is a DamagedStateError, not a traceback."""
        if not os.path.isfile(path):
            raise self._damaged(f"{path} is missing")
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {k: saved[k] for k in saved.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise self._damaged(f"{path} is not a readable .npz file ({e})") from e
        lacking = sorted(set(names or ()) - set(arrays))
        if lacking:
            raise self._damaged(f"{path} lacks the arrays {lacking}")
        return arrays

    def _load_optimizer(self, optimizer, path: str) -> None:
        saved = self._read_npz(path)
        try:
            values = [saved[f"v{i}"] for i in range(len(saved))]
        except KeyError as e:
            raise self._damaged(f"{path} is not an optimizer's state (no {e})") from None
        variables = optimizer.variables
        if [tuple(v.shape) for v in variables] != [tuple(a.shape) for a in values]:
            raise StateMismatchError(f"the optimizer state in {path} does not fit this "
                                     "optimizer: it was written by a different configuration.")
        for variable, value in zip(variables, values):
            variable.assign(value)

    def _load_extra(self, folder: str, state: dict) -> dict:
        extra = dict(state.get("extra") or {})
        path = os.path.join(folder, "extra.npz")
        names = state.get("arrays")  # absent in backups written before it was recorded
        if names or (names is None and os.path.exists(path)):
            extra.update(self._read_npz(path, names))
        return extra

    # -- writing ------------------------------------------------------------------------------
    def save(self, epoch: int, step: int) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        number = max(self._numbers(), default=0) + 1
        name = f"ckpt-{number}"
        folder = os.path.join(self.backup_dir, name)
        shutil.rmtree(folder, ignore_errors=True)  # a half-written one from a killed run
        os.makedirs(folder)
        for model_name, model in self.models.items():
            build_compiled_optimizer(model)  # saved with the slots a restore builds
            model.save_weights(os.path.join(folder, f"{model_name}.weights.h5"), overwrite=True)
        for opt_name, optimizer in self.optimizers.items():
            np.savez(os.path.join(folder, f"{opt_name}.optimizer.npz"),
                     **{f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
        json_part, arrays = {}, {}
        if self.get_extra is not None:
            extra = self.get_extra() or {}
            arrays = {k: v for k, v in extra.items() if isinstance(v, np.ndarray)}
            json_part = {k: v for k, v in extra.items() if k not in arrays}
            if arrays:
                np.savez(os.path.join(folder, "extra.npz"), **arrays)
        atomic_write_json(self.state_path,
                          {"epoch": epoch, "step": step, "saved": name, "extra": json_part,
                           "arrays": sorted(arrays)})
        self._remove_all_but(name)

    def _numbers(self) -> list[int]:
        if not os.path.isdir(self.backup_dir):
            return []
        return [int(m[1]) for m in map(_CKPT.match, os.listdir(self.backup_dir)) if m]

    def _remove_all_but(self, keep: str) -> None:
        for number in self._numbers():
            if f"ckpt-{number}" != keep:
                shutil.rmtree(os.path.join(self.backup_dir, f"ckpt-{number}"),
                              ignore_errors=True)
        legacy = os.path.join(self.backup_dir, LEGACY_WEIGHTS)
        if os.path.exists(legacy):
            os.remove(legacy)

    def size_bytes(self) -> int:
        """Bytes of the current checkpoint folder (reported for large buffers)."""
        state = self.read() or {}
        folder = os.path.join(self.backup_dir, state.get("saved") or "")
        return sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(folder) for f in files) if state else 0

    def move_aside(self) -> str:
        """Renames the backup folder to <backup_dir>.damaged-<time> (kept, not deleted)."""
        target = f"{self.backup_dir.rstrip(os.sep)}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.backup_dir, target)
        return target

"""A run's exported SavedModel, as the demo calls it: found from the run's folder, loaded with
tf.saved_model.load, and called through its serving signatures only (never the Keras model), so
the page shows what TF Serving would answer. A refused request becomes `Refused`, carrying the
signature's own message (docs/export.md, "Limits and the error contract").

Which page a model gets is read from its signatures, not from the task that wrote it, so an
export of any suite version (one without warm-up records or a task name in its metadata) loads.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from suite.errors import ExportError

KINDS = ("classifier", "segmenter", "detector", "captioner", "dcgan", "dqn")


class Refused(ValueError):
    """The signature refused the request; the message is its own, for the page."""


def _versions(base: str) -> list[int]:
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if d.isdigit() and os.path.isfile(os.path.join(base, d, "saved_model.pb")))


def _export_bases(run_dir: str) -> list[str]:
    """Where a run's versions may be: beside its last export (results.json; --export_dir may
    have put it elsewhere), <run>/export/<name> (run.json), any <run>/export/* and the folder
    itself (a model base)."""
    from suite.runtime.run_file import read_results, read_run_file

    bases = []
    exported = read_results(run_dir).get("export")
    if isinstance(exported, str):
        bases.append(os.path.dirname(exported.rstrip(os.sep)))
    name = (read_run_file(run_dir) or {}).get("name")
    if name:
        bases.append(os.path.join(run_dir, "export", name))
    root = os.path.join(run_dir, "export")
    if os.path.isdir(root):
        bases += sorted(os.path.join(root, d) for d in os.listdir(root))
    return bases + [run_dir]


def find_export(model_dir: str, version: int | None = None) -> str:
    """The version folder to serve for `model_dir`: a run's folder (its newest export, or
    `version`), a model base holding version folders, or a version folder itself."""
    if not os.path.isdir(model_dir):
        raise ExportError(f"`model_dir={model_dir}` is not a folder: pass a training run's "
                          "--model_dir (or an export's version folder).")
    if os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    for base in _export_bases(model_dir):
        versions = _versions(base)
        if versions and version is None:
            return os.path.join(base, str(versions[-1]))
        if version in versions:
            return os.path.join(base, str(version))
    which = f"version {version}" if version is not None else "export"
    raise ExportError(
        f"{model_dir} holds no {which} (a folder export/<name>/<version>/ with a "
        "saved_model.pb): the run was trained with --noexport or has not finished. Write one "
        f"with: python -m apps.export --model_dir={model_dir}")


def kind_of(signatures) -> str:
    """Which of KINDS a SavedModel is, from its signatures' names, inputs and outputs."""
    if "detect" in signatures:
        return "detector"
    if "beam_search" in signatures:
        return "captioner"
    if "from_seed" in signatures:
        return "dcgan"
    default = signatures["serving_default"]
    if "observation" in default.structured_input_signature[1]:
        return "dqn"
    outputs = default.structured_outputs
    if "class_map" in outputs:
        return "segmenter"
    if "probabilities" in outputs:
        return "classifier"
    raise ExportError(f"Not an export of this suite's apps: signatures {sorted(signatures)}, "
                      f"serving_default's outputs {sorted(outputs)}.")


def refusal(error: Exception) -> str:
    """The signature's message in a TensorFlow error (its assertion's text)."""
    text = getattr(error, "message", str(error))
    found = re.search(r"assertion failed: \[(.*)\]\s*$", text, re.M)
    return found.group(1) if found else text.strip().splitlines()[0]


class Served:
    """One exported version: its folder, metadata, signatures and kind."""

    def __init__(self, version_dir: str, signatures=None):
        """`signatures`: the folder's, if already loaded."""
        import tensorflow as tf

        self.path = os.path.abspath(version_dir)
        self.version = os.path.basename(self.path)
        self.name = os.path.basename(os.path.dirname(self.path))
        metadata_path = os.path.join(self.path, "assets.extra", "metadata.json")
        self.metadata = {}
        if os.path.isfile(metadata_path):
            with open(metadata_path) as f:
                self.metadata = json.load(f)
        self.signatures = signatures or tf.saved_model.load(self.path).signatures
        self.kind = kind_of(self.signatures)

    def inputs(self, signature: str) -> dict:
        """{input name: tf.TensorSpec} of one signature."""
        return self.signatures[signature].structured_input_signature[1]

    def warm_up(self) -> int:
        """Replays the export's warm-up records (suite.export.warmup), as TF Serving does when
        it loads a version, so the page's first answer is not its slowest; returns how many
        (0 for an export made before they existed)."""
        from suite.export.warmup import read_warmup

        requests = read_warmup(self.path)
        for signature, inputs in requests:
            self(signature, **inputs)
        return len(requests)

    def num_classes(self) -> int:
        """Classes of a classifier's or segmenter's `probabilities` (from its signature)."""
        return int(self.signatures["serving_default"].structured_outputs["probabilities"]
                   .shape[-1])

    def class_names(self, count: int) -> list[str]:
        names = self.metadata.get("class_names")
        return list(names) if names and len(names) == count else [str(i) for i in range(count)]

    def __call__(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        """The signature's outputs as arrays; `Refused` with its message if it refuses."""
        import tensorflow as tf

        specs = self.inputs(signature)
        try:
            outputs = self.signatures[signature](
                **{k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as e:
            raise Refused(refusal(e)) from None
        return {key: value.numpy() for key, value in outputs.items()}

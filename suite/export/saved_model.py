"""Writes SavedModels in TF Serving's versioned layout, atomically, never overwriting.

Layout: `<export_base>/<name>/<version>/` (saved_model.pb, variables/, assets.extra/metadata.json
and assets.extra/tf_serving_warmup_requests: suite.export.warmup).
TF Serving watches `<export_base>/<name>` and serves the highest numeric version; each version is
written into a hidden temporary sibling and renamed into place, so a crash never leaves a
half-written version that a server would pick up, and an existing version is never replaced
(TF Serving may be serving it; versions should be immutable).

Which signatures a model serves is its task's business (Task.serving_signatures, a dict of
Signatures; the image classifiers' are in suite.export.classifier); this module writes them,
every request checked in the graph against the inputs its signature declares, with
`keras.export.ExportArchive`, not `tf.saved_model.save`: the latter's output loads in Python
but fails in `saved_model_cli run` and TF Serving with "Could not find variable"
(tensorflow/tensorflow#72963, see FINDINGS.md).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid

import keras

from suite.errors import ExportError
from suite.export import guards
from suite.export.warmup import write_warmup

METADATA_FILE = os.path.join("assets.extra", "metadata.json")


def next_version(model_base: str) -> int:
    """1 + the highest numeric version folder under `model_base` (1 if there is none)."""
    if not os.path.isdir(model_base):
        return 1
    versions = [int(d) for d in os.listdir(model_base)
                if d.isdigit() and os.path.isdir(os.path.join(model_base, d))]
    return max(versions, default=0) + 1


def read_metadata(version_dir: str) -> dict:
    """The metadata written next to the SavedModel (class names, shapes, signatures, ...)."""
    with open(os.path.join(version_dir, METADATA_FILE)) as f:
        return json.load(f)


def build_archive(signatures: dict) -> keras.export.ExportArchive:
    """An ExportArchive with one endpoint per `suite.export.signature.Signature`, every
    request checked in the graph against the signature's declared inputs (suite.export.guards)."""
    if not signatures:
        raise ExportError("no serving signatures to export")
    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoints already capture the variables they use, and
    # tracking the Keras variables as well stores every weight twice (a 2x larger SavedModel).
    for name, signature in signatures.items():
        inputs = [guards.as_input(declared) for declared in signature.inputs]
        archive.add_endpoint(name, guards.checked(signature.fn, inputs),
                             [guards.spec(declared) for declared in inputs])
    return archive


def describe_inputs(signatures: dict) -> dict:
    """{signature: {input: what it takes}}: the metadata's statement of what is checked."""
    return {name: {declared.name: declared.describe()
                   for declared in map(guards.as_input, signature.inputs)}
            for name, signature in signatures.items()}


def check_model_name(name: str) -> None:
    """ExportError unless `name` is a plain folder name: the `<export_base>/<name>/` folder."""
    if not name or os.sep in name or name.startswith(".") or (os.altsep and os.altsep in name):
        raise ExportError(f"Model name {name!r} must be a plain folder name such as 'mnist'.")


def write_saved_model(export_base: str, name: str, signatures: dict, metadata: dict,
                      version: int | None = None) -> str:
    """Writes `<export_base>/<name>/<version>/` atomically and returns that folder.

    `version=None` takes the next free integer (1 for a new model). `metadata` (JSON) goes to
    assets.extra/metadata.json, with the signature names and what each input takes
    ("inputs": dtype, shape, value range, image limits) added; TF Serving's warm-up records
    (two example requests per signature) go beside it.
    """
    check_model_name(name)
    model_base = os.path.join(export_base, name)
    if version is None:
        version = next_version(model_base)
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError("version must be a positive integer (TF Serving's folder names); "
                          f"got {version!r}.")
    version_dir = os.path.join(model_base, str(version))
    if os.path.exists(version_dir):
        raise ExportError(f"{version_dir} already exists; versions are never overwritten. Pass "
                          f"another version (next free: {next_version(model_base)}) or omit it.")

    archive = build_archive(signatures)
    os.makedirs(model_base, exist_ok=True)
    # Non-numeric names are ignored by TF Serving's version watcher.
    tmp_dir = os.path.join(model_base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(tmp_dir, verbose=False)
        os.makedirs(os.path.join(tmp_dir, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp_dir, METADATA_FILE), "w") as f:
            json.dump({**metadata, "signatures": list(signatures),
                       "inputs": describe_inputs(signatures)}, f, indent=2)
        write_warmup(tmp_dir, name, signatures)
        if os.path.exists(version_dir):  # someone else exported meanwhile
            raise ExportError(f"{version_dir} appeared while exporting; not overwriting it.")
        os.rename(tmp_dir, version_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return version_dir

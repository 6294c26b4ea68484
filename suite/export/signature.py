"""One serving signature of a SavedModel, as a Task declares it (no TensorFlow import here)."""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass
class Signature:
    """One serving signature: `fn` called with tensors matching `inputs` (tf.TensorSpecs whose
    names become the request's input names), returning a dict of named output tensors."""
    fn: Callable
    inputs: list

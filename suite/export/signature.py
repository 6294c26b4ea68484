"""One serving signature of a SavedModel as a Task declares it, and what each of its inputs
takes (no TensorFlow import here: suite.export.guards checks a request against these).

A signature's inputs are `Input`s: name, dtype, shape and what the values may be. The writer
(suite.export.saved_model) checks every request against them in the graph and states them in
the export's metadata, so what a client reads and what the server refuses are one declaration.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

# A decoded image's height x width: 4096 x 4096 (16.8 megapixels). An image is decoded whole
# before it is cropped or resized, so this bounds what one encoded image can make the server
# allocate (a 316 KB PNG can hold 10000 x 10000 pixels).
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGE_BYTES = 16 * 2**20  # one encoded image


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What the images of one request may cost, refused before anything is decoded."""
    max_pixels: int = MAX_IMAGE_PIXELS  # height x width of each image
    max_bytes: int = MAX_IMAGE_BYTES  # each encoded image (PNG or JPEG)
    # batch x height x width: for models that run at the images' own size (the segmenter),
    # whose memory grows with every pixel of the request, not only with the largest image.
    max_request_pixels: int | None = None

    def describe(self) -> dict:
        limits = {"max_image_pixels": self.max_pixels, "max_image_bytes": self.max_bytes}
        if self.max_request_pixels is not None:
            limits["max_request_pixels"] = self.max_request_pixels
        return limits


@dataclasses.dataclass(frozen=True)
class Input:
    """One request input. `shape`: None for any size, the batch first; () for a scalar."""
    name: str
    dtype: str  # "float32", "uint8", "int32", "int64" or "string"
    shape: tuple
    pixels: bool = False  # float raw pixels 0..255: a request whose values all lie in [0, 1]
    bounds: tuple | None = None  # inclusive (low, high) of every value
    limits: ImageLimits | None = None  # images of any size, or encoded images
    about: str = ""  # what the values are, for the error message and the metadata
    example: object = None  # a scalar's value in example requests (TF Serving's warm-up)

    def __post_init__(self):
        # tf.debugging.Assert prints a message with its quotes escaped (\' and \"): a client
        # would read backslashes. Input names and notes are written without them.
        if any(q in self.name + self.about for q in "'\""):
            raise ValueError(f"Input {self.name!r}: no quotes in its name or note "
                             f"({self.about!r}); error messages would show them escaped")

    def shape_text(self) -> str:
        """The shape as an error message and the metadata write it: [batch, height, width, 3]."""
        names = {0: "batch"}
        if len(self.shape) == 4:
            names.update({1: "height", 2: "width"})
        return "[" + ", ".join(str(size) if size is not None else names.get(axis, "any")
                               for axis, size in enumerate(self.shape)) + "]"

    def describe(self) -> dict:
        """What the export's metadata says of this input."""
        out = {"dtype": self.dtype, "shape": self.shape_text()}
        if self.about:
            out["values"] = self.about
        if self.dtype.startswith("float"):
            out["finite"] = True
        if self.pixels:
            out["refused"] = "a request whose values all lie within [0, 1] (0..1 pixels)"
        if self.bounds is not None:
            out["range"] = list(self.bounds)
        if self.limits is not None:
            out.update(self.limits.describe())
        return out


@dataclasses.dataclass
class Signature:
    """One serving signature: `fn` called with tensors matching `inputs` (`Input`s, or
    tf.TensorSpecs whose names become the request's input names, checked for rank, shape and
    finite values only), returning a dict of named output tensors."""
    fn: Callable
    inputs: list

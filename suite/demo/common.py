"""What every page shares: the upload box, the line that shows a refusal instead of a
traceback, and the handler wrapper that puts it there."""
from __future__ import annotations

import functools

import gradio as gr
import numpy as np

from suite.demo.served import Refused

UPLOAD_NOTE = "Drop an image (PNG or JPEG)"


def upload_box() -> gr.File:
    """The raw file, not gr.Image: its bytes go to the signature untouched (gr.Image would
    decode and re-encode them first, and an image too large would cost memory here)."""
    return gr.File(label=UPLOAD_NOTE, type="filepath", elem_id="upload", height=120)


def message_box() -> gr.Markdown:
    return gr.Markdown(elem_id="message")


def on_upload(upload: gr.File, handler, inputs: list, outputs: list) -> None:
    """`handler` runs when a file is dropped; removing the file blanks the answer."""
    upload.upload(handler, inputs, outputs)
    upload.clear(lambda: (None,) * (len(outputs) - 1) + ("",), None, outputs)


def refused_text(reason: str) -> str:
    return f"**The model refused this request:** {reason}"


def guarded(outputs: int):
    """Handler decorator: a `Refused` request, or nothing to send, blanks the `outputs` and
    shows its message (the handler's last output) on the page."""

    def wrap(handler):
        @functools.wraps(handler)
        def run(*args):
            try:
                return handler(*args)
            except Refused as e:
                return (None,) * outputs + (refused_text(str(e)),)
            except NothingToSend as e:
                return (None,) * outputs + (str(e),)

        return run

    return wrap


class NothingToSend(ValueError):
    """No image or drawing yet: said on the page, nothing is sent."""


def required(data, what: str = "an image"):
    if data is None:
        raise NothingToSend(f"Drop {what} first.")
    return data


def enlarged(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: small images stay sharp in the page's image boxes."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def called(served, *signatures: str) -> str:
    """The footnote naming the export and the signatures a page calls."""
    names = ", ".join(f"`{s}`" for s in signatures)
    return (f"Calls {names} of `{served.path}` through `tf.saved_model.load`, the signatures "
            "TF Serving serves: every answer here is what serving returns.")

"""The segmenter's page (FCN, U-Net): drop an image, see the class map over it, one colour per
class, and each class's share of the pixels."""
from __future__ import annotations

import gradio as gr
import numpy as np

from suite.demo.common import called, guarded, message_box, on_upload, required, upload_box
from suite.demo.inputs import decoded, read_upload


def colours(count: int) -> list[str]:
    from suite.viz.segmentation import palette

    return ["#%02x%02x%02x" % tuple(colour) for colour in palette(count)]


def segment(served, data: bytes | None):
    """((image, [(mask, label)]) for gr.AnnotatedImage, answer) through serve_image_bytes."""
    outputs = served("serve_image_bytes", image_bytes=[required(data)])
    class_map = outputs["class_map"][0]
    names = served.class_names(outputs["probabilities"].shape[-1])
    masks, shares = [], []
    for index, name in enumerate(names):
        mask = class_map == index
        if mask.any():
            masks.append((mask.astype(np.float32), name))
            shares.append(f"{name} {mask.mean():.1%}")
    line = (f"`serve_image_bytes` answered a {class_map.shape[0]}x{class_map.shape[1]} class "
            f"map: {', '.join(shares)}")
    return (decoded(data), masks), line


def build(served) -> None:
    names = served.class_names(served.num_classes())
    with gr.Row():
        with gr.Column():
            upload = upload_box()
        with gr.Column(scale=2):
            overlay = gr.AnnotatedImage(label="Class map", color_map=dict(zip(
                names, colours(len(names)))), elem_id="overlay")
    message = message_box()

    @guarded(outputs=1)
    def answer_upload(path):
        return segment(served, read_upload(path))

    on_upload(upload, answer_upload, [upload], [overlay, message])
    gr.Markdown(called(served, "serve_image_bytes"))

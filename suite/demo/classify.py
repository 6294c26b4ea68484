"""The image classifiers' page (MNIST, VGG, GoogLeNet, ResNet): draw a digit (grey models) or
drop an image, see the classes the signature ranks first, with the run's class names."""
from __future__ import annotations

import gradio as gr
import numpy as np

from suite.demo.common import (NothingToSend, called, enlarged, guarded, message_box,
                               on_upload, required, upload_box)
from suite.demo.inputs import digit_image, ink, preview, read_upload

TOP = 5
SKETCH_SIDE = 280  # canvas pixels; a 28x28 digit is drawn 10x larger


def answer(served, signature: str, outputs: dict, top: int) -> tuple[dict, str]:
    """({class name: probability} of the `top` likeliest, the answer as a line of text) of a
    one-image answer."""
    probabilities, class_id = outputs["probabilities"][0], int(outputs["class_ids"][0])
    names = served.class_names(len(probabilities))
    best = np.argsort(-probabilities, kind="stable")[:top]
    ranked = ", ".join(f"{names[i]} {probabilities[i]:.4g}" for i in best)
    named = f" (`{names[class_id]}`)" if names[class_id] != str(class_id) else ""
    line = f"`{signature}` answered class_ids **{class_id}**{named}; top {len(best)}: {ranked}"
    return {names[i]: float(probabilities[i]) for i in best}, line


def from_bytes(served, data: bytes | None, top: int = TOP):
    """(top classes, answer, the image) for an uploaded file, through serve_image_bytes."""
    outputs = served("serve_image_bytes", image_bytes=[required(data)])
    labels, line = answer(served, "serve_image_bytes", outputs, top)
    return labels, line, preview(data)


def from_drawing(served, editor_value, top: int = 10):
    """(top classes, answer, the digit sent, enlarged 8x) for a drawing, through serve_uint8."""
    drawn = ink(editor_value)
    if drawn is None:
        raise NothingToSend("Draw a digit first.")
    height, width, _ = image_shape(served)
    digit = digit_image(drawn, min(height, width))
    outputs = served("serve_uint8", image=digit[None])
    labels, line = answer(served, "serve_uint8", outputs, top)
    return labels, line, enlarged(digit, 8)


def image_shape(served) -> list:
    """[H, W, C] the model takes (its signature's, so exports of any age have it)."""
    return served.inputs("serving_default")["image"].shape.as_list()[1:]


def blank_canvas() -> dict:
    """A white background: the brush draws at once (without one, the editor first asks for
    its draw tool)."""
    return {"background": np.full((SKETCH_SIDE, SKETCH_SIDE, 3), 255, np.uint8), "layers": [],
            "composite": None}


def drawing_section(served, classes: int) -> None:
    with gr.Row():
        with gr.Column():
            sketch = gr.Sketchpad(
                value=blank_canvas(), canvas_size=(SKETCH_SIDE, SKETCH_SIDE),
                brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                type="numpy", image_mode="RGBA", layers=False, transforms=(),
                label="Draw a digit", elem_id="sketch")
            classify = gr.Button("Classify", variant="primary", elem_id="classify")
        with gr.Column():
            sent = gr.Image(label="What the model gets (white on black)", format="png",
                            interactive=False, height=240, elem_id="sent")
            labels = gr.Label(num_top_classes=min(classes, 10), label="Probabilities",
                              elem_id="drawn_labels")
    line = gr.Markdown(elem_id="drawn_answer")

    @guarded(outputs=2)
    def answer_drawing(value):
        top, text, image = from_drawing(served, value)
        return image, top, text

    classify.click(answer_drawing, sketch, [sent, labels, line])


def upload_section(served, classes: int) -> None:
    with gr.Row():
        with gr.Column():
            upload = upload_box()
            picture = gr.Image(label="Your image", interactive=False, height=300,
                               elem_id="picture")
        with gr.Column():
            labels = gr.Label(num_top_classes=min(classes, TOP), label=f"Top {TOP}",
                              elem_id="labels")
    message = message_box()

    @guarded(outputs=2)
    def answer_upload(path):
        top, line, image = from_bytes(served, read_upload(path))
        return image, top, line

    on_upload(upload, answer_upload, [upload], [picture, labels, message])


def build(served) -> None:
    """Grey models (MNIST) get a canvas to draw on and an upload tab; others the upload."""
    classes = served.num_classes()
    if image_shape(served)[-1] == 1:
        with gr.Tab("Draw"):
            drawing_section(served, classes)
        with gr.Tab("Upload"):
            upload_section(served, classes)
        gr.Markdown(called(served, "serve_uint8", "serve_image_bytes"))
    else:
        upload_section(served, classes)
        gr.Markdown(called(served, "serve_image_bytes"))

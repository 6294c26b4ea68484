"""The detector's page (Faster R-CNN): drop an image, see the boxes with class names and
scores; a slider sets the `detect` signature's score threshold."""
from __future__ import annotations

import gradio as gr

from suite.demo.common import called, guarded, message_box, on_upload, required, upload_box
from suite.demo.inputs import decoded, read_upload


def slots(served) -> int:
    """The most detections `detect` takes (its declared bound, else the export's cap)."""
    declared = served.metadata.get("inputs", {}).get("detect", {}).get("max_detections", {})
    return int(declared.get("range", [1, served.metadata.get("max_detections", 100)])[1])


def default_threshold(served) -> float:
    return float(served.metadata.get("score_threshold", 0.5))


def detect(served, data: bytes | None, threshold: float):
    """((image, [(box, label)]) for gr.AnnotatedImage, answer) through `detect`."""
    outputs = served("detect", image_bytes=[required(data)], score_threshold=float(threshold),
                     max_detections=slots(served))
    found = int(outputs["num_detections"][0])
    boxes = []
    for box, score, name in zip(outputs["boxes"][0][:found], outputs["scores"][0][:found],
                                outputs["class_names"][0][:found]):
        boxes.append((tuple(int(round(v)) for v in box), f"{name.decode()} {score:.3f}"))
    listed = "; ".join(f"{label} at {box}" for box, label in boxes) or "nothing"
    line = (f"`detect` (score_threshold {float(threshold):.2f}) answered {found} "
            f"detection{'s' if found != 1 else ''}: {listed}")
    return (decoded(data), boxes), line


def build(served) -> None:
    with gr.Row():
        with gr.Column():
            upload = upload_box()
            threshold = gr.Slider(0.0, 1.0, value=default_threshold(served), step=0.01,
                                  label="Score threshold", elem_id="threshold")
        with gr.Column(scale=2):
            shown = gr.AnnotatedImage(label="Detections", elem_id="detections")
    message = message_box()

    @guarded(outputs=1)
    def on_input(path, value):
        return detect(served, read_upload(path), value)

    on_upload(upload, on_input, [upload, threshold], [shown, message])
    threshold.release(on_input, [upload, threshold], [shown, message])
    gr.Markdown(called(served, "detect"))

"""The captioner's page (NIC): drop an image, see its greedy caption (serving_default) and its
beam-search caption (beam_search) at the beam width the slider sets."""
from __future__ import annotations

import gradio as gr

from suite.demo.common import called, guarded, message_box, on_upload, required, upload_box
from suite.demo.inputs import preview, read_upload

BEAM = 3  # evaluation's default width


def widest(served) -> int:
    declared = served.metadata.get("inputs", {}).get("beam_search", {}).get("beam_size", {})
    return int(declared.get("range", [1, 20])[1])


def caption(served, data: bytes | None, beam_size: int):
    """(the image, greedy caption, beam-search caption, answer) of both signatures."""
    images = [required(data)]
    greedy = served("serving_default", image_bytes=images)
    beam = served("beam_search", image_bytes=images, beam_size=int(beam_size))
    greedy_text, beam_text = greedy["caption"][0].decode(), beam["caption"][0].decode()
    line = (f"`serving_default` answered \"{greedy_text}\" (log probability "
            f"{greedy['log_probability'][0]:.3f}); `beam_search` (beam_size {int(beam_size)}) "
            f"answered \"{beam_text}\" (score {beam['score'][0]:.3f})")
    return preview(data), greedy_text, beam_text, line


def build(served) -> None:
    with gr.Row():
        with gr.Column():
            upload = upload_box()
            beam_size = gr.Slider(1, widest(served), value=BEAM, step=1, label="Beam width",
                                  elem_id="beam_size")
            picture = gr.Image(label="Your image", interactive=False, height=300,
                               elem_id="picture")
        with gr.Column():
            greedy = gr.Textbox(label="Greedy caption (serving_default)", elem_id="greedy")
            beam = gr.Textbox(label="Beam-search caption (beam_search)", elem_id="beam")
    message = message_box()

    @guarded(outputs=3)
    def on_input(path, width):
        return caption(served, read_upload(path), width)

    on_upload(upload, on_input, [upload, beam_size], [picture, greedy, beam, message])
    beam_size.release(on_input, [upload, beam_size], [picture, greedy, beam, message])
    gr.Markdown(called(served, "serving_default", "beam_search"))

"""The DCGAN's page: two seeds, the generator's image for each (from_seed: the same image for
the same seed on any machine) and the images on the straight line between their latents
(serving_default)."""
from __future__ import annotations

import gradio as gr
import numpy as np

from suite.demo.common import called, enlarged, guarded, message_box

STEPS = 8


def generate(served, seed_a, seed_b, steps):
    """(gallery of (image, caption), answer): the two seeds' images and their interpolation."""
    from suite.tasks.dcgan import interpolation_latents

    seeds = np.array([int(seed_a or 0), int(seed_b or 0)], np.int64)
    ends = served("from_seed", seed=seeds)
    latents = interpolation_latents(ends["latent"][:1], ends["latent"][1:], int(steps))
    images = served("serving_default", latent=latents)["images"]
    factor = max(1, 112 // images.shape[1])  # MNIST's 28 pixels shown at 112
    gallery = [(enlarged(image, factor), f"t = {t:.2f}")
               for image, t in zip(images, np.linspace(0, 1, len(images)))]
    same = bool(np.array_equal(images[0], ends["images"][0])
                and np.array_equal(images[-1], ends["images"][1]))
    line = (f"`from_seed` answered seeds {seeds[0]} and {seeds[1]} with "
            f"{ends['latent'].shape[1]}-number latents; `serving_default` answered "
            f"{len(images)} images of {images.shape[1]}x{images.shape[2]} along the line "
            f"between them{' (its ends are the seeds’ own images)' if same else ''}")
    return gallery, line


def build(served) -> None:
    with gr.Row():
        seed_a = gr.Number(value=7, precision=0, label="Seed A", elem_id="seed_a")
        seed_b = gr.Number(value=42, precision=0, label="Seed B", elem_id="seed_b")
        steps = gr.Slider(2, 16, value=STEPS, step=1, label="Images from A to B",
                          elem_id="steps")
        run = gr.Button("Generate", variant="primary", elem_id="generate")
    gallery = gr.Gallery(label="From seed A to seed B", columns=STEPS, height="auto",
                         elem_id="gallery")
    message = message_box()

    @guarded(outputs=1)
    def on_generate(a, b, count):
        return generate(served, a, b, count)

    run.click(on_generate, [seed_a, seed_b, steps], [gallery, message])
    gr.Markdown(called(served, "from_seed", "serving_default"))

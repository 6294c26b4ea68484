"""The demo's page for one export, and its server: bound to 127.0.0.1 only (the page runs a
model on whatever it is sent; reach it from elsewhere through an SSH tunnel), no analytics,
no public link, no web fonts (it works offline)."""
from __future__ import annotations

import importlib
import os

PAGES = {"classifier": "classify", "segmenter": "segment", "detector": "detect",
         "captioner": "caption", "dcgan": "generate", "dqn": "play"}
TITLES = {"classifier": "image classifier", "segmenter": "segmenter", "detector": "detector",
          "captioner": "captioner", "dcgan": "DCGAN", "dqn": "DQN policy"}
HOST = "127.0.0.1"
# Uploads past this never reach the signature (Gradio refuses them); below it, the signature's
# own limit of 16 MiB per image answers with its message.
MAX_UPLOAD = "64mb"


def build_page(served):
    """The gr.Blocks page of `served` (a suite.demo.served.Served)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    page_module = importlib.import_module(f"suite.demo.{PAGES[served.kind]}")
    title = f"{served.name} {served.version}: {TITLES[served.kind]}"
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}")
        page_module.build(served)
    return page


def serve(page, port: int, block: bool = True):
    """Serves `page` on http://127.0.0.1:<port>/ (until interrupted, when `block`)."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    theme = gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])
    return page.launch(server_name=HOST, server_port=port, share=False, inbrowser=False,
                       ssr_mode=False, max_file_size=MAX_UPLOAD, theme=theme,
                       footer_links=["gradio"], prevent_thread_lock=not block, quiet=True)

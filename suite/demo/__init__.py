"""A local web page that tries a run's exported SavedModel through its serving signatures
(python -m apps.demo): one page per kind of export, built with Gradio."""

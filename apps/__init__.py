"""Entry points, one per application: `python -m apps.<name> --flagfile=apps/flags/<preset>.flags`.

Importing `suite` first applies TensorFlow's CPU defaults (suite.runtime.startup) before any
app module can import TensorFlow.
"""
import suite  # noqa: F401

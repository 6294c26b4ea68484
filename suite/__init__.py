"""suite: the classic deep networks in Keras 3 on TensorFlow, trained, scaled out and served.

Importing the package sets TensorFlow's CPU defaults (oneDNN on x86, quieter C++ logs) unless
the user has set them; they only take effect if TensorFlow has not been imported yet, so import
`suite` (or an app) first. See suite.runtime.startup for why.
"""
from suite.runtime.startup import apply_cpu_defaults as _apply_cpu_defaults

_apply_cpu_defaults()

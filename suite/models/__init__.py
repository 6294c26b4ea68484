"""Model builders: `suite/models/<name>.py` exposes `build_<name>(...) -> keras.Model`.

Builders use only `keras.layers` / `keras.ops`, so the same code runs on the TensorFlow
backend (training, export) and on JAX (the accelerator machine has no TensorFlow).
"""

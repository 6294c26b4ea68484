"""Entry points, one per application: `python -m apps.<name> --flagfile=apps/flags/<preset>.flags`."""
import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) hides the app's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


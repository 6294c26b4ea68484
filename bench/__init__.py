"""Measurements of the suite against its peers (PyTorch, the book's NumPy code) and itself.

Not part of the installed `suite`: every bench runs from the repository root as

    python -m bench.<name> [--flags]        # --help: what it measures, and its flags

and reads the shared data (../shared/data, ../shared/reference) by default, so the tests never
run one. Their common pieces: `cli` (the command line), `machine` (what a number was measured
on), `interleaved` (peers measured in rotating rounds), `roofline` (the arithmetic ceiling) and
the PyTorch twins of the suite's networks (`torch_*.py`). bench/README.md says what each
bench measures.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
SHARED = os.path.join(REPO, "..", "shared")
SHARED_DATA = os.path.join(SHARED, "data")

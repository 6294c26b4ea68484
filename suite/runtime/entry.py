"""The absl `main` every training app shares: quiet logs, one-line errors for bad input, exit codes."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging


def training_main(train: Callable[[], dict]) -> Callable[[list[str]], None]:
    """Wraps `train()` (returns the results dict with "exit_code") as an absl main function."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not flags.FLAGS["verbosity"].present:  # TensorFlow's INFO lines drown the app's own
            logging.set_verbosity(logging.WARNING)
        try:
            results = train()
        except (ValueError, RuntimeError) as e:  # DataError and the like are ValueErrors
            # Bad input gets one clear line, not a traceback; nothing saved has been touched.
            logging.debug("details", exc_info=True)  # --verbosity=1 shows the traceback
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        sys.exit(results["exit_code"])

    return main

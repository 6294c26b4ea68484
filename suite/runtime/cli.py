"""The command line of every training app: flags from the Task's config, signals, exit codes.

    if __name__ == "__main__":
        main(MnistTask)          # python -m apps.train_mnist --flagfile=...

`main` generates the app's flags from `task_class.config_class` (suite.runtime.flags), parses
them, builds the config and the Task, runs it (suite.runtime.runner) and exits with the run's
code: 0, 1 (diverged), 2 (bad input: one `error:` line naming the flag, never a traceback),
130/143 (stopped by a signal, state saved), 138 (a peer of a multi-worker run was lost; the
last backup is intact: suite.runtime.peers).
"""
from __future__ import annotations

import sys


def _adopt_as_key_flags(fv, names) -> None:
    """--help lists the main module's key flags: make every flag the app defined one, the
    shared runtime/schedule/optimizer flags included."""
    main_module = sys.argv[0]
    for name in names:
        fv.register_key_flag_for_module(main_module, fv[name])


def _exit_cleanly_on_signals() -> None:
    """Outside training (start-up, evaluation, export) SIGTERM/SIGINT end the process at once
    with 143/130 and a line saying so, instead of killing it silently; during training the
    stop requests (suite.runtime.stopping) take over and save first."""
    import signal

    from suite.runtime.stopping import EXIT_CODES

    def leave(signum, frame):
        name = signal.Signals(signum).name
        print(f"\n{name} received outside training: nothing to save; exiting.", flush=True)
        sys.exit(EXIT_CODES[name])

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)


def _leave_now(code: int) -> None:
    """Exits at once, skipping TensorFlow's teardown: after a lost peer its coordination agent
    would wait at shutdown for the peer that is gone (the job would hang instead of being
    requeued). Everything worth keeping is saved; only the output needs flushing."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def flags_text(fv, names) -> str:
    """flags.txt: the app's flags as --flagfile lines (not TensorFlow's or absl's, which exist
    only when TensorFlow loaded before parsing), so the run replays."""
    return "".join(f"{line}\n" for line in (fv[n].serialize() for n in names) if line)


def main(task_class, argv=None) -> None:
    """Defines the app's flags, parses them, runs its task and exits with the run's code.

    Bad input (flags, data, a locked or damaged folder) is one `error:` line (or a short block)
    on stderr and exit code 2, its fields worded as the flags; --verbosity=1 adds the traceback
    and TensorFlow's start-up lines.
    """
    from absl import app, flags, logging

    from suite.config import field_names
    from suite.runtime.flags import (as_flags, config_from_flags, define_flags, parse_flags,
                                     usage_error)

    config_class = task_class.config_class
    fv = flags.FLAGS
    before = set(fv)
    define_flags(fv, config_class)
    app_flags = sorted(set(fv) - before)
    _adopt_as_key_flags(fv, app_flags)
    names = field_names(config_class)

    def _main(args):
        if len(args) > 1:
            usage_error(f"unexpected arguments: {' '.join(args[1:])}")
        _exit_cleanly_on_signals()
        verbose = fv["verbosity"].present
        if not verbose:  # TensorFlow's INFO lines drown the app's own
            logging.set_verbosity(logging.WARNING)
        from suite.runtime.peers import EXIT_LOST_PEER
        from suite.runtime.runner import run_task
        from suite.runtime.startup import load_tensorflow

        load_tensorflow(quiet=not verbose)
        try:
            config = config_from_flags(fv, config_class)
            results = run_task(task_class(config), config.runtime,
                               flags_text=flags_text(fv, app_flags))
        except (ValueError, RuntimeError, OSError) as e:  # DataError and the like
            # Bad input gets a clear message, not a traceback; nothing saved was touched.
            logging.debug("details", exc_info=True)
            print(f"error: {as_flags(str(e), names)}", file=sys.stderr, flush=True)
            sys.exit(2)
        if results["exit_code"] == EXIT_LOST_PEER:
            _leave_now(EXIT_LOST_PEER)
        sys.exit(results["exit_code"])

    # Flag validators may import TensorFlow (model names, augmentations): load it quietly
    # first, unless --verbosity asks to see its start-up lines.
    if not any(a.startswith(("--verbosity", "-v")) for a in (argv or sys.argv)[1:]):
        from suite.runtime.startup import load_tensorflow

        load_tensorflow(quiet=True)
    app.run(_main, argv=argv, flags_parser=parse_flags)

"""The benches' command line: absl flags, as the apps have them.

    def define_flags(fv):                 # the bench's flags, defined only when it runs
        flags.DEFINE_integer("steps", 20, "timed steps per round", flag_values=fv)

    def main(args):                       # args.steps: the bench's own flags by name
        ...

    if __name__ == "__main__":
        cli.run(main, define_flags)       # python -m bench.<name> [--flags]

Flags are defined when a bench runs, never when it is imported, so one bench can use another's
pieces (and the tests import them all) without two definitions of --steps meeting. A bad flag,
or a combination a bench refuses with `usage_error`, exits 2 with one `error:` line, as in the
apps (suite.runtime.flags). `args` holds the bench's flags only, not absl's or TensorFlow's, so
a results file can record vars(args).
"""
from __future__ import annotations

import sys
import types

from absl import app, flags

from suite.runtime.flags import parse_flags, usage_error

__all__ = ["parse", "peer_names", "run", "usage_error"]


def run(main, define_flags=None, rest: str | None = None) -> None:
    """Defines the bench's flags, parses the command line and calls main(args). Where the bench
    names `rest`, the arguments after `--` (flags it passes on to an app) are args.<rest>;
    otherwise any are an error."""
    fv = flags.FLAGS
    before = set(fv)
    if define_flags:
        define_flags(fv)
    names = [name for name in fv if name not in before]
    for name in names:  # --help lists them all, those of helpers (roofline.add_flag) too
        fv.register_key_flag_for_module(sys.argv[0], fv[name])

    def _main(argv):
        args = types.SimpleNamespace(**{name: fv[name].value for name in names})
        if rest:
            setattr(args, rest, argv[1:])
        elif len(argv) > 1:
            usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
        return main(args)

    app.run(_main, flags_parser=parse)


def parse(argv: list[str], fv: flags.FlagValues = flags.FLAGS) -> list[str]:
    """parse_flags, except that a bench with a --flagfile flag of its own (an app's preset that
    it passes on) gets that flag: absl would read the file as the bench's own flags."""
    if "flagfile" not in fv:
        return parse_flags(argv, fv)
    kept, i = argv[:1], 1
    while i < len(argv) and argv[i] != "--":
        arg = argv[i]
        if arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
            fv["flagfile"].parse(argv[i + 1])  # before parsing, where it may be required
            i += 1
        elif arg.startswith(("--flagfile=", "-flagfile=")):
            fv["flagfile"].parse(arg.split("=", 1)[1])
        else:
            kept.append(arg)
        i += 1
    return parse_flags(kept + argv[i:], fv)


def peer_names(text: str, offered, of: str = "") -> list[str]:
    """The peers a comma-separated --peers names, in its order; an unknown one (or one not
    offered `of` a network) is a usage error."""
    names = [name for name in text.split(",") if name]
    if unknown := set(names) - set(offered):
        where = f" for {of}" if of else ""
        usage_error(f"unknown peers {sorted(unknown)}{where}; choose from {', '.join(offered)}")
    return names

"""absl flags generated from a typed config (suite.config), and errors worded as flags.

    define_flags(fv, MnistConfig)            one flag per option, groups flattened
    config = config_from_flags(fv, MnistConfig)

Each flag has its field's name (a group's prefix first), default, help and type: bool ->
DEFINE_boolean, int/float/str -> DEFINE_integer/_float/_string, choices -> DEFINE_enum, a
tuple -> DEFINE_list. The field's checks become the flag's validators and the config's rules
multi-flag validators, so a bad value fails when the command line is parsed, naming the flag.
Library errors name fields in backticks; `as_flags` words them as the flags the user typed.

An app defines its flags into a FlagValues it is given, never at import: two apps imported into
one process (a test session) then cannot share, or silently keep, each other's defaults.
"""
from __future__ import annotations

import re
import sys

from absl import flags

from suite import config as cfg
from suite.errors import ConfigError

_FIELD = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)((?:=[^`]*)?)`")


def as_flags(message: str, names: dict[str, str]) -> str:
    """`message` with every backticked field of `names` (field -> flag name) written as its
    flag: "`init_from=x` is missing" -> "--init_from=x is missing"."""
    def word(match):
        flag = names.get(match.group(1))
        return f"--{flag}{match.group(2)}" if flag else match.group(0)
    return _FIELD.sub(word, message)


def define_flags(fv: flags.FlagValues, config_class: type, prefix: str = "", of: str = "",
                 defaults: dict | None = None) -> None:
    """Defines the flags of every option of `config_class` and of its groups into `fv`."""
    names = cfg.field_names(config_class, prefix)
    defaults = defaults or {}
    of_text = f" of {of}" if of else ""
    for spec in cfg.specs(config_class):
        name = prefix + spec.name
        default = defaults.get(spec.name, spec.default)
        text = as_flags(spec.help.replace("{of}", of_text), names)
        _define(fv, spec, name, default, text)
        if spec.required:
            flags.mark_flag_as_required(name, flag_values=fv)
        flags.register_validator(name, _checker(spec, names), flag_values=fv)
    for field in cfg.groups(config_class):
        meta = field.metadata
        define_flags(fv, meta["group"], prefix + meta["prefix"], meta["of"], meta["defaults"])
    for fn in cfg.rules(config_class):
        flag_of = {path: _flag_name(config_class, path, prefix) for path in fn.rule_fields}
        flags.register_multi_flags_validator(list(flag_of.values()),
                                             _rule_checker(config_class, fn, flag_of, names),
                                             flag_values=fv)


def config_from_flags(fv: flags.FlagValues, config_class: type, prefix: str = ""):
    """The config the parsed flags describe; a ConfigError from it is worded as flags."""
    values = {spec.name: from_flag(spec, fv[prefix + spec.name].value)
              for spec in cfg.specs(config_class)}
    for field in cfg.groups(config_class):
        values[field.name] = config_from_flags(fv, field.metadata["group"],
                                               prefix + field.metadata["prefix"])
    try:
        return config_class(**values)
    except ConfigError as e:
        raise ConfigError(as_flags(str(e), cfg.field_names(config_class, prefix))) from None


def config_from_args(config_class: type, args: list[str]):
    """The config an app's command-line `args` (flags only, e.g. a preset's --flagfile)
    describe, parsed into flags of their own: for benches and tests that read a preset without
    running its app."""
    fv = flags.FlagValues()
    define_flags(fv, config_class)
    fv(["app", *args])
    return config_from_flags(fv, config_class)


def from_flag(spec: cfg.Spec, value):
    """A flag's value as its field's: a list's elements typed, an enum of numbers a number."""
    if value is None:
        return None
    if spec.kind is tuple:
        try:
            return tuple(spec.element(v.strip()) for v in value)
        except ValueError:
            what = spec.message or (f"must be a comma-separated list of "
                                    f"{'integers' if spec.element is int else 'numbers'}")
            raise ConfigError(f"`{spec.name}` {what}") from None
    if spec.kind in (int, float) and isinstance(value, str):  # DEFINE_enum of numbers
        return spec.kind(value)
    return value


def _define(fv, spec: cfg.Spec, name: str, default, text: str) -> None:
    if spec.choices is not None and spec.kind in (int, float, str):
        flags.DEFINE_enum(name, None if default is None else str(default),
                          [str(c) for c in spec.choices], text, flag_values=fv)
    elif spec.kind is bool:
        flags.DEFINE_boolean(name, default, text, flag_values=fv)
    elif spec.kind is int:
        flags.DEFINE_integer(name, default, text, flag_values=fv)
    elif spec.kind is float:
        flags.DEFINE_float(name, default, text, flag_values=fv)
    elif spec.kind is str:
        flags.DEFINE_string(name, default, text, flag_values=fv)
    else:
        flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=fv)


def _checker(spec: cfg.Spec, names: dict):
    def check(value):
        try:
            spec.validate(from_flag(spec, value))
        except ConfigError as e:
            raise flags.ValidationError(as_flags(str(e), names)) from None
        return True
    return check


def _rule_checker(config_class, fn, flag_of: dict, names: dict):
    spec_of = {path: _spec(config_class, path) for path in flag_of}

    def check(values):
        try:
            message = fn(**{path.split(".")[-1]: spec_of[path].validate(from_flag(
                spec_of[path], values[flag])) for path, flag in flag_of.items()})
        except ConfigError as e:
            message = str(e)
        if message:
            raise flags.ValidationError(as_flags(message, names))
        return True
    return check


def _spec(config_class: type, path: str) -> cfg.Spec:
    *group_names, name = path.split(".")
    for group_name in group_names:
        config_class = next(f for f in cfg.groups(config_class)
                            if f.name == group_name).metadata["group"]
    return next(s for s in cfg.specs(config_class) if s.name == name)


def _flag_name(config_class: type, path: str, prefix: str) -> str:
    *group_names, name = path.split(".")
    for group_name in group_names:
        field = next(f for f in cfg.groups(config_class) if f.name == group_name)
        config_class, prefix = field.metadata["group"], prefix + field.metadata["prefix"]
    return prefix + name


def usage_error(message: str):
    """Bad command-line input: one `error:` line and exit code 2 (1 is a crash's), no --help."""
    print(f"error: {message}\nPass --help to see the flags.", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv, fv: flags.FlagValues = flags.FLAGS):
    """absl's parsing for `app.run(main, flags_parser=parse_flags)`: its own exits 1."""
    try:
        return fv(argv)
    except flags.Error as e:
        usage_error(str(e))


def start_tool(argv, fv: flags.FlagValues = flags.FLAGS) -> bool:
    """The start of a tool's main (apps.export, apps.demo, apps.precision_report): refuses
    positional arguments, keeps absl's INFO lines for an explicit --verbosity; returns whether
    it was given (TensorFlow's start-up lines are kept then too)."""
    if len(argv) > 1:
        usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging

    verbose = fv["verbosity"].present
    if not verbose:
        logging.set_verbosity(logging.WARNING)
    return verbose


def tool_error(error: Exception):
    """A tool's refusal (a missing file, an unusable run): one `error:` line, exit code 2."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)

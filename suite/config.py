"""Typed configs: every option is written once, as a dataclass field with its help and checks.

    @dataclasses.dataclass
    class ThingConfig(Config):
        runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/thing")
        width: int = option(32, "Units of the hidden layer.", bounds=">= 1")
        depth: int = option(2, "Hidden layers.", bounds="[1, 8]")

        @rule("width", "depth")
        def _fits(width, depth):
            if width * depth > 4096:
                return "`width` x `depth` must be at most 4096"

A config checks itself when it is made: field types, bounds, choices, an option's own `check`
and the rules that span fields. Errors are ConfigErrors naming fields in backticks (`width`),
so a Python caller reads the field it passed; suite.runtime.flags generates absl flags of the
same names, defaults, help and checks from the fields and words those errors as flags
(--width). A group is a nested config whose fields become flags too, optionally prefixed
(`group(OptimizerConfig, prefix="g_")` gives --g_learning_rate).

Kinds of field: bool, int, float, str, tuple[int, ...] / tuple[str, ...] (comma-separated
lists on the command line), each optionally `| None`. An optional text option set to "" is
None: so `--init_from=` clears a preset's path in every app alike.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import re
import types
import typing
from typing import Any, Callable

from suite.errors import ConfigError

_BOUND = re.compile(r"^(>=|>|<=|<)\s*(-?[0-9.e+-]+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(-?[0-9.e+-]+)\s*,\s*(-?[0-9.e+-]+)\s*([\])])$")


def option(default: Any, help: str, *, bounds: str | None = None, choices=None,
           check: Callable[[Any], None] | None = None, required: bool = False,
           message: str | None = None):
    """A config field with its command-line help.

    bounds: ">= 1", "> 0", "[0, 1)", ... (each element of a list option); choices: the allowed
    values; check(value): raises ValueError (worded after the field's name: "must be ..." or
    anything else after a colon) or a ConfigError already naming the field; required: must be
    given (no default run makes sense); message: replaces the bounds' "must be ..." wording.
    None (an unset optional) skips bounds, choices and check."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable: use a tuple")
    if bounds is not None:
        _parse_bounds(bounds)  # a typo fails at import, not when a user hits it
    return dataclasses.field(default=default, metadata={
        "help": help, "bounds": bounds, "choices": tuple(choices) if choices else None,
        "check": check, "required": required, "message": message})


def existing_path(*keywords: str, what: str, kind: str = "any", verb: str = "be"):
    """A `check` for a path option that may also take `keywords` ('imagenet', ...): the
    error reads "must be 'imagenet' or <what>"; `kind` "file" or "folder" narrows it."""
    exists = {"any": os.path.exists, "file": os.path.isfile, "folder": os.path.isdir}[kind]
    allowed = ", ".join(repr(k) for k in keywords)
    allowed = f"{allowed} or {what}" if keywords else what

    def check(value: str) -> None:
        if value not in keywords and not exists(value):
            raise ValueError(f"must {verb} {allowed}")
    return check


def group(config_class: type, *, prefix: str = "", of: str = "", **defaults):
    """A nested config whose fields are options too, with this app's defaults; `prefix` names
    its flags (g_ gives --g_learning_rate), `of` fills "{of}" in its help (" of the generator")."""
    return dataclasses.field(default_factory=functools.partial(config_class, **defaults),
                             metadata={"group": config_class, "prefix": prefix, "of": of,
                                       "defaults": defaults})


def rule(*fields: str):
    """Marks a function of the named fields (dotted into groups: "schedule.batch_size", passed
    by their last name) that returns an error message, or None when they agree."""
    def mark(fn):
        fn.rule_fields = fields
        return fn
    return mark


@dataclasses.dataclass(frozen=True)
class Spec:
    """What the flags and the checks need to know of one option field."""
    name: str
    kind: type  # bool, int, float, str, or tuple for lists
    element: type | None  # a list's element type
    optional: bool  # None allowed
    default: Any
    help: str
    bounds: str | None
    choices: tuple | None
    check: Callable | None
    required: bool
    message: str | None

    def bounds_text(self) -> str:
        if self.message:
            return self.message
        low_high = _INTERVAL.match(self.bounds)
        return f"must be in {self.bounds}" if low_high else f"must be {self.bounds}"

    def validate(self, value):
        """`value` normalised (a list becomes a tuple, "" an unset optional text None), or a
        ConfigError naming the field."""
        name = self.name
        if value is None or (value == "" and self.optional and self.kind is str):
            if self.required:
                raise ConfigError(f"`{name}` must be given")
            if self.optional:
                return None
            raise ConfigError(f"`{name}` must be {_kind_name(self.kind, self.element)}, got None")
        if self.kind is tuple:
            if not isinstance(value, (tuple, list)):
                raise ConfigError(f"`{name}` must be {_kind_name(tuple, self.element)}, got "
                                  f"{value!r}")
            value = tuple(_typed(self.element, v, name) for v in value)
            items = value
        else:
            value = _typed(self.kind, value, name)
            items = (value,)
        if self.required and value in ("", ()):
            raise ConfigError(f"`{name}` must be given")
        for item in items:
            if self.choices is not None and item not in self.choices:
                raise ConfigError(f"`{name}` must be one of {', '.join(map(str, self.choices))}; "
                                  f"got {item!r}")
            if self.bounds is not None and not _within(item, self.bounds):
                raise ConfigError(f"`{name}` {self.bounds_text()}")
        if self.check is not None:
            try:
                self.check(value)
            except ConfigError:
                raise
            except ValueError as e:
                text = str(e)
                raise ConfigError(f"`{name}` {text}" if text.startswith("must ")
                                  else f"`{name}`: {text}") from e
        return value


class Config:
    """Base of every config dataclass: checks its fields and rules when made."""

    def __post_init__(self):
        for spec in specs(type(self)):
            object.__setattr__(self, spec.name, spec.validate(getattr(self, spec.name)))
        for fn in rules(type(self)):
            message = fn(**{path.split(".")[-1]: self.get(path) for path in fn.rule_fields})
            if message:
                raise ConfigError(message)

    def get(self, path: str):
        """A field by dotted path: "schedule.batch_size"."""
        value = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def groups(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are nested configs."""
    return [f for f in dataclasses.fields(cls) if "group" in f.metadata]


@functools.cache
def specs(cls: type) -> tuple[Spec, ...]:
    """The option fields of `cls` (not its groups), in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "group" in f.metadata:
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not an option(...): give it help text")
        kind, element, optional = _kind_of(hints[f.name], f"{cls.__name__}.{f.name}")
        m = f.metadata
        out.append(Spec(f.name, kind, element, optional, f.default, m["help"], m["bounds"],
                        m["choices"], m["check"], m["required"], m["message"]))
    return tuple(out)


@functools.cache
def rules(cls: type) -> tuple[Callable, ...]:
    """The rule functions of `cls` and its bases."""
    found = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            fn = value.__func__ if isinstance(value, staticmethod) else value
            if callable(fn) and hasattr(fn, "rule_fields"):
                found[name] = fn
    return tuple(found.values())


def field_names(cls: type, prefix: str = "") -> dict[str, str]:
    """Every option's field name -> its flag name (groups flattened with their prefixes); the
    unprefixed name wins where a prefixed group has the same field."""
    names = {spec.name: prefix + spec.name for spec in specs(cls)}
    for g in groups(cls):
        for field, flag in field_names(g.metadata["group"], prefix + g.metadata["prefix"]).items():
            names.setdefault(field, flag)
    return names


def _kind_of(hint, where: str):
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{where}: unsupported type {hint}")
        hint = args[0]
    if hint in (bool, int, float, str):
        return hint, None, optional
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (int, str, float):
            return tuple, args[0], optional
    raise TypeError(f"{where}: unsupported option type {hint}")


def _kind_name(kind, element) -> str:
    if kind is tuple:
        return f"a comma-separated list of {_kind_name(element, None).split()[-1]}s"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "text"}.get(kind, str(kind))


def _typed(kind: type, value, name: str):
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, numbers.Integral) and not isinstance(value, bool),
          float: isinstance(value, numbers.Real) and not isinstance(value, bool),
          str: isinstance(value, str)}[kind]
    if not ok:
        raise ConfigError(f"`{name}` must be {_kind_name(kind, None)}, got {value!r}")
    return kind(value)


def _parse_bounds(bounds: str):
    one = _BOUND.match(bounds)
    if one:
        return one.group(1), float(one.group(2))
    two = _INTERVAL.match(bounds)
    if two:
        return two.group(1), float(two.group(2)), float(two.group(3)), two.group(4)
    raise ValueError(f"bounds {bounds!r}: write '>= 1', '> 0', '[0, 1)' and the like")


def _within(value, bounds: str) -> bool:
    parsed = _parse_bounds(bounds)
    if len(parsed) == 2:
        op, limit = parsed
        return {">=": value >= limit, ">": value > limit, "<=": value <= limit,
                "<": value < limit}[op]
    opening, low, high, closing = parsed
    above = value >= low if opening == "[" else value > low
    below = value <= high if closing == "]" else value < high
    return above and below

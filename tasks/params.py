"""Typed doit variables: declared once, parsed and checked in one place.

    MODEL = Var("model", str, "vgg_16", "net to train", choices=NET_NAMES)
    MODEL.get()  # the value of `doit train model=...`, or the default

A name may be declared by several stages (batch_size for train and benchmark)
as long as the types agree; each declaration keeps its own default.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from zoobuild.errors import UserError

_REGISTRY: dict[str, list["Var"]] = {}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true/false")


def _parse_list(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


_PARSERS = {bool: _parse_bool, int: int, float: float, str: str, list: _parse_list}
_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
               list: "a comma-separated list"}


def _cmdline() -> dict:
    from doit import doit_cmd  # light: doit is loaded already when dodo.py runs

    return dict(doit_cmd._CMDLINE_VARS or {})


@dataclass(eq=False)
class Var:
    name: str
    type: type
    default: object
    help: str
    choices: tuple | None = None
    owner: str = field(default="")

    def __post_init__(self):
        if self.type not in _PARSERS:
            raise TypeError(f"variable {self.name}: unsupported type {self.type}")
        if self.choices is not None:
            self.choices = tuple(self.choices)
        for other in _REGISTRY.get(self.name, []):
            if other.type is not self.type:
                raise TypeError(f"variable {self.name} declared as {other.type.__name__} "
                                f"and {self.type.__name__}")
        if not self.owner:
            frame = sys._getframe(1)
            while frame and frame.f_globals.get("__name__", "").startswith(("tasks.params", "dataclasses")):
                frame = frame.f_back
            self.owner = frame.f_globals.get("__name__", "") if frame else ""
        _REGISTRY.setdefault(self.name, []).append(self)

    def parse(self, text: str):
        try:
            value = _PARSERS[self.type](text)
        except ValueError:
            raise UserError(f"{self.name}={text!r}: expected {_TYPE_NAMES[self.type]} ({self.help})")
        if self.choices is not None:
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in self.choices]
            if bad:
                raise UserError(f"{self.name}={text!r}: expected one of {', '.join(map(str, self.choices))}")
        return value

    def given(self) -> bool:
        return self.name in _cmdline()

    def get(self):
        raw = _cmdline().get(self.name)
        if raw is None:
            return list(self.default) if isinstance(self.default, list) else self.default
        return self.parse(raw)


def registry() -> dict[str, list[Var]]:
    return _REGISTRY


def check_cmdline() -> None:
    """Refuse unknown variable names and bad values with one line and exit status 2."""
    try:
        for name, raw in _cmdline().items():
            if name not in _REGISTRY:
                raise UserError(f"unknown variable {name!r}; valid variables: "
                                f"{', '.join(sorted(_REGISTRY))} (see `doit vars`)")
            for var in _REGISTRY[name]:
                var.parse(raw)
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        raise SystemExit(2)

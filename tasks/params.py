"""Typed doit variables: declared once, parsed and checked in one place.

    MODEL = Var("model", str, "vgg_16", "net to train", choices=NET_NAMES)
    STEPS = Var("steps", int, 10, "stop at this global step", minimum=1)
    VERSION = Var("version", str, "", "release to publish", check=release_or_range)
    MODEL.get()  # the value of `doit train model=...`, or the default

Every variable says what values it takes: a type, and where the type allows more than
makes sense, `choices`, a `minimum` and/or `maximum` (inclusive; counts are at least 1, 0
only where it means "off" or "automatic"), or a `check` of its format.  A `check` gets the
parsed value and raises ValueError("expected ...") or a UserError naming the variable; its
docstring's first line says what it expects (`doit vars`).  For a string variable whose
default is "" (meaning "not given"), the empty string is not checked.

`check_cmdline` checks every `name=value` on the command line when dodo.py loads, so a bad
value stops the load with one line and exit status 2 before any task runs.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from zoobuild.errors import BAD_INPUT, UserError, report

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
    minimum: int | float | None = None
    maximum: int | float | None = None
    check: Callable | None = None
    owner: str = field(default="")
    _parsed: tuple | None = field(default=None, init=False, repr=False)

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
        if ((self.minimum is not None and value < self.minimum)
                or (self.maximum is not None and value > self.maximum)):
            raise UserError(f"{self.name}={text!r}: expected {self.expected()} ({self.help})")
        if self.check is not None and not (value == "" and self.default == ""):
            try:
                self.check(value)
            except ValueError as err:
                raise UserError(f"{self.name}={text!r}: {err}") from None
        return value

    def expected(self) -> str:
        """What values this variable takes, in words (for messages, `doit vars` and the README)."""
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.minimum is not None and self.maximum is not None:
            return f"{_TYPE_NAMES[self.type]} from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"{_TYPE_NAMES[self.type]} >= {self.minimum}"
        if self.maximum is not None:
            return f"{_TYPE_NAMES[self.type]} <= {self.maximum}"
        if self.check is not None and self.check.__doc__:
            return self.check.__doc__.strip().splitlines()[0]
        return _TYPE_NAMES[self.type]

    def given(self) -> bool:
        return self.name in _cmdline()

    def get(self):
        raw = _cmdline().get(self.name)
        if raw is None:
            value = self.default
        elif self._parsed is not None and self._parsed[0] == raw:
            value = self._parsed[1]   # checked once: a cluster file is not re-read per task
        else:
            value = self.parse(raw)
            self._parsed = (raw, value)
        return list(value) if isinstance(value, list) else value


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
        report(err)
        raise SystemExit(BAD_INPUT)


# ---------------------------------------------------------------- formats
# A format's first docstring line says what it expects; Var.expected() shows it.

def release_or_range(text: str) -> None:
    """X.Y.Z[-YYYYMMDD], bleedingedge, latest, or a range ^X[.Y[.Z]] / ~X.Y[.Z]"""
    from artifacts import semver

    if text in ("bleedingedge", "latest"):
        return
    try:
        semver.parse_range(text)
    except UserError:
        raise ValueError("expected X.Y.Z or X.Y.Z-YYYYMMDD (like 1.2.0) or bleedingedge; for "
                         "fetch also latest or a range ^X[.Y[.Z]] / ~X.Y[.Z]") from None


def is_release(text: str) -> bool:
    """An exact version X.Y.Z[-YYYYMMDD] or the bleedingedge channel: what publish accepts."""
    from artifacts import semver

    return text == "bleedingedge" or semver.is_version(text)


def json_object(text: str) -> None:
    """a JSON object, like {"key": "value"}"""
    import json

    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"expected a JSON object ({err})") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object, like {\"key\": \"value\"}")


def host_port(text: str) -> None:
    """HOST:PORT, port 1..65535"""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT with a port from 1 to 65535, like 127.0.0.1:5000")


def cluster_file(text: str) -> None:
    """a JSON/YAML file of ps and worker lists of host:port, or k8s:ps=P,workers=N (doit pipeline)"""
    if text.startswith("k8s:"):   # Kubernetes manifests of `doit pipeline`, no file to read
        from pipelines.k8s import parse_cluster

        parse_cluster(text)
        return
    from slim.distributed import load_cluster

    load_cluster(text)   # a UserError that names the file and what was expected

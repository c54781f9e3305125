"""Checking a mapping read from a file (an image spec, a wheel recipe) against a table of
typed fields: unknown fields, missing required ones and values of the wrong type, each
reported as one line that names the field and what was expected.

    check_fields(data, {"name": str, "jobs": int, "env": dict}, required=("name",),
                 where="recipes/r.yml")

A field given as null (YAML `key:`) counts as not given.  `fail(name, message)` lets a
caller with more to say (a spec file's line numbers) raise its own error; by default a
UserError "<where>: <message>" is raised.
"""
from __future__ import annotations

from typing import Callable, Mapping

from zoobuild.errors import UserError

TYPE_WORDS = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
              list: "a list", dict: "a mapping"}


def type_word(typ) -> str:
    return TYPE_WORDS.get(typ, getattr(typ, "__name__", str(typ)))


def is_of(value, typ) -> bool:
    """isinstance, except that true/false is not an integer or a number, and an integer is
    a number."""
    if typ in (int, float) and isinstance(value, bool):
        return False
    if typ is float:
        return isinstance(value, (int, float))
    return isinstance(value, typ)


def check_fields(data: Mapping, fields: Mapping[str, type], required=(), *, where: str = "",
                 fail: Callable[[str, str], None] | None = None) -> None:
    """Raise on the first unknown field, missing required field or mistyped value."""
    if fail is None:
        def fail(name, message):
            raise UserError(f"{where}: {message}" if where else message)

    for name in data:
        if name not in fields:
            fail(name, f"unknown field {name!r}; expected one of {', '.join(fields)}")
    for name in required:
        if data.get(name) is None:
            fail(name, f"missing field {name!r} (expected {type_word(fields[name])})")
    for name, typ in fields.items():
        value = data.get(name)
        if value is not None and not is_of(value, typ):
            fail(name, f"field {name!r} is {_short(value)}; expected {type_word(typ)}, "
                       f"got {type(value).__name__}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

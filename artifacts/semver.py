"""Model versions `X.Y.Z` with an optional date suffix (`1.2.0-20261121`), ranges and bump rules.

The rules (after Autoware's model zoo):
  X  the input/output signature changed (detected by comparing manifests, not declared);
  Y  the weights (or behaviour) changed;
  Z  anything else (a repackaging, new metadata).
A version may bump more than it has to, never less.  The date suffix is a label:
it orders after the X.Y.Z core and never stands in for a bump.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from zoobuild.errors import UserError

_VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-(\d{8}))?$")
LEVELS = ("patch", "minor", "major")          # weakest first


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    date: str | None = None

    @classmethod
    def parse(cls, text: str, what: str = "version") -> "Version":
        m = _VERSION_RE.match(str(text).strip())
        if not m:
            raise UserError(f"{what} {text!r}: expected X.Y.Z or X.Y.Z-YYYYMMDD (e.g. 1.2.0-20261121)")
        date = m.group(4)
        if date is not None:
            try:
                _dt.datetime.strptime(date, "%Y%m%d")
            except ValueError:
                raise UserError(f"{what} {text!r}: date suffix {date} is not a calendar date (YYYYMMDD)")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), date)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def sort_key(self) -> tuple:
        return (*self.core, self.date or "")

    def __lt__(self, other: "Version") -> bool:
        return self.sort_key < other.sort_key

    def __le__(self, other: "Version") -> bool:
        return self.sort_key <= other.sort_key

    def __gt__(self, other: "Version") -> bool:
        return self.sort_key > other.sort_key

    def __ge__(self, other: "Version") -> bool:
        return self.sort_key >= other.sort_key

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{self.date}" if self.date else core


def is_version(text: str) -> bool:
    return bool(_VERSION_RE.match(str(text)))


def sort_versions(texts) -> list[str]:
    """Version strings, oldest first; names that are not versions (channels) are dropped."""
    return [str(v) for v in sorted(Version.parse(t) for t in texts if is_version(t))]


# ---------------------------------------------------------------- ranges

@dataclass(frozen=True)
class Range:
    """`^1.2` (same major, >= 1.2.0), `~1.2.3` (same minor, >= 1.2.3), or an exact version."""
    text: str
    kind: str                  # caret | tilde | exact
    lo: tuple[int, int, int]
    hi: tuple[int, int, int] | None   # exclusive upper bound of the core; None for exact
    exact: Version | None = None

    @property
    def major(self) -> int:
        return self.lo[0]

    def matches(self, v: Version) -> bool:
        if self.kind == "exact":
            return v == self.exact if self.exact.date else v.core == self.exact.core
        return self.lo <= v.core < self.hi


def _partial(body: str, text: str) -> list[int]:
    parts = body.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise UserError(f"version range {text!r}: expected ^X[.Y[.Z]], ~X.Y[.Z] or X.Y.Z")
    return [int(p) for p in parts]


def _caret(nums: list[int]) -> tuple[tuple, tuple]:
    lo = tuple(nums + [0] * (3 - len(nums)))
    # npm semantics: the left-most non-zero component given is held fixed
    if lo[0] > 0 or len(nums) == 1:
        return lo, (lo[0] + 1, 0, 0)
    if lo[1] > 0 or len(nums) == 2:
        return lo, (0, lo[1] + 1, 0)
    return lo, (0, 0, lo[2] + 1)


def _tilde(nums: list[int]) -> tuple[tuple, tuple]:
    lo = tuple(nums + [0] * (3 - len(nums)))
    if len(nums) == 1:
        return lo, (lo[0] + 1, 0, 0)
    return lo, (lo[0], lo[1] + 1, 0)


_RANGE_KINDS = {"^": ("caret", _caret), "~": ("tilde", _tilde)}


def parse_range(text: str) -> Range:
    text = str(text).strip()
    if text and text[0] in _RANGE_KINDS:
        kind, fn = _RANGE_KINDS[text[0]]
        lo, hi = fn(_partial(text[1:], text))
        return Range(text, kind, lo, hi)
    v = Version.parse(text, what="version range")
    return Range(text, "exact", v.core, None, exact=v)


# ---------------------------------------------------------------- bump rules

def bump_level(old: Version, new: Version) -> str | None:
    """Which component `new` bumps over `old`: major/minor/patch, or None when not newer in X.Y.Z."""
    if new.major != old.major:
        return "major" if new.major > old.major else None
    if new.minor != old.minor:
        return "minor" if new.minor > old.minor else None
    if new.patch != old.patch:
        return "patch" if new.patch > old.patch else None
    return None


def required_level(previous: dict, current: dict) -> tuple[str, str]:
    """(level, why) from two manifests' `signature` and `weights_sha256`."""
    if previous.get("signature") != current.get("signature"):
        return "major", "the input/output signature changed"
    if previous.get("weights_sha256") != current.get("weights_sha256"):
        return "minor", "the weights changed"
    return "patch", "neither signature nor weights changed"


def check_new_version(name: str, new: Version, published: dict[str, dict], current: dict) -> str:
    """Raise UserError (one line) when `new` breaks the X/Y/Z rules against what is published.

    `published` maps version string -> that version's manifest (any arch).
    Returns a short line saying which rule the version satisfies.
    """
    versions = sorted(Version.parse(v) for v in published)
    if not versions:
        return f"{name} {new}: first version"
    latest = versions[-1]
    same_core = [v for v in versions if v.core == new.core]
    if same_core:
        raise UserError(f"{name} {new}: version {same_core[-1]} already has core "
                        f"{new.major}.{new.minor}.{new.patch}; bump X, Y or Z (a date suffix is not a bump)")
    if new < latest:
        raise UserError(f"{name} {new}: older than the latest published version {latest}; "
                        "versions only move forward")
    level, why = required_level(published[str(latest)], current)
    got = bump_level(latest, new)
    if LEVELS.index(got) < LEVELS.index(level):
        want = {"major": f"{latest.major + 1}.0.0", "minor": f"{latest.major}.{latest.minor + 1}.0",
                "patch": f"{latest.major}.{latest.minor}.{latest.patch + 1}"}[level]
        raise UserError(f"{name} {new}: {why} since {latest}, so the {level} number must go up "
                        f"(expected at least {want}, got a {got} bump)")
    return f"{name} {new}: {got} bump over {latest} ({why})"

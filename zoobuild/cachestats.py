"""What the shared cache did in this run, and the one line a run with a cache ends with:
`cache: N fetched, N built, N uploaded; X down, Y up[; parts: N fetched, N shared]`."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stats:
    """What the cache did in this run; `summary()` is the line a run ends with.  Events also go
    to the file named by ZOOBUILD_CACHE_EVENTS when set, so that the actions of a parallel run
    (`doit -n N`, worker processes) count in the summary the main process prints."""
    fetched: list = field(default_factory=list)
    built: list = field(default_factory=list)
    uploaded: list = field(default_factory=list)
    parts_fetched: list = field(default_factory=list)     # file-set entries (TFRecord shards)
    parts_uploaded: list = field(default_factory=list)
    bytes_down: int = 0
    bytes_up: int = 0

    def note(self, kind: str, name: str, nbytes: int = 0) -> None:
        self._add(kind, name, nbytes)
        events = os.environ.get("ZOOBUILD_CACHE_EVENTS")
        if events and os.getpid() != int(os.environ.get("ZOOBUILD_CACHE_EVENTS_PID", "0")):
            with open(events, "a") as f:          # one short line per event: appends stay whole
                f.write(json.dumps([kind, name, nbytes]) + "\n")

    def _add(self, kind, name, nbytes):
        getattr(self, kind).append(name)
        if kind.endswith("fetched"):
            self.bytes_down += nbytes
        elif kind.endswith("uploaded"):
            self.bytes_up += nbytes

    def merge_events(self, path) -> None:
        """Add the events worker processes wrote to `path`."""
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                kind, name, nbytes = json.loads(line)
            except ValueError:
                continue
            self._add(kind, name, nbytes)

    def summary(self) -> str:
        line = (f"cache: {len(self.fetched)} fetched, {len(self.built)} built, "
                f"{len(self.uploaded)} uploaded; {size(self.bytes_down)} down, "
                f"{size(self.bytes_up)} up")
        if self.parts_fetched or self.parts_uploaded:
            line += f"; parts: {len(self.parts_fetched)} fetched, {len(self.parts_uploaded)} shared"
        return line

    def any(self) -> bool:
        return bool(self.fetched or self.built or self.uploaded or self.parts_fetched
                    or self.parts_uploaded)


STATS = Stats()


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"

"""Progress of long loops: a rich bar with rate and ETA on a terminal, plain periodic lines
(every `every` seconds, and at the end) when stderr is not one, so CI logs stay readable.

    with progress("convert train", total=n, unit="images") as bar:
        for ...:
            bar.advance(1, loss=0.12)
"""
from __future__ import annotations

import contextlib
import os
import sys
import time


def _fmt_fields(fields: dict) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


class PlainProgress:
    """One line now and then: done/total, rate, ETA and the latest fields."""

    def __init__(self, description, total, unit, every, stream):
        self.description, self.total, self.unit = description, total, unit
        self.every, self.stream = every, stream
        self.done, self.fields = 0, {}
        self.start = self.last = time.monotonic()

    def advance(self, n=1, **fields):
        self.done += n
        self.fields.update(fields)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now, final=False):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.description}: {self.done}"
        if self.total:
            text += f"/{self.total}"
        text += f" {self.unit}, {rate:.3g} {self.unit}/s"
        if self.total and not final and rate > 0:
            text += f", ETA {max(self.total - self.done, 0) / rate:.0f} s"
        if final:
            text += f", {elapsed:.1f} s"
        if self.fields:
            text += f" ({_fmt_fields(self.fields)})"
        print(text, file=self.stream, flush=True)

    def close(self):
        self._line(time.monotonic(), final=True)


class RichProgress:
    def __init__(self, description, total, unit, stream):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                             console=Console(file=stream), transient=False)
        self.unit, self.start, self.done = unit, time.monotonic(), 0
        self._bar.start()
        self._task = self._bar.add_task(description, total=total or None, rate="", info="")

    def advance(self, n=1, **fields):
        self.done += n
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        self._bar.update(self._task, advance=n, rate=f"{rate:.3g} {self.unit}/s",
                         info=_fmt_fields(fields))

    def close(self):
        self._bar.stop()


@contextlib.contextmanager
def progress(description: str, total: int | None = None, unit: str = "items",
             every: float = 10.0, stream=None):
    """A bar (terminal) or periodic lines (pipe, file, CI). ZOOBUILD_PROGRESS=plain|rich forces one."""
    stream = stream or sys.stderr
    mode = os.environ.get("ZOOBUILD_PROGRESS") or ("rich" if stream.isatty() else "plain")
    bar = (RichProgress(description, total, unit, stream) if mode == "rich"
           else PlainProgress(description, total, unit, every, stream))
    try:
        yield bar
    finally:
        bar.close()

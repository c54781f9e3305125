"""One doit run at a time per build directory; a second run waits for the first."""
from __future__ import annotations

import fcntl
import os
import sys

from zoobuild import paths

# commands that only read the graph or the state take no lock
READ_ONLY = {"list", "info", "help", "why", "graph", "vars", "dumpdb", "tabcompletion", "strace"}
_held = None


def hold_run_lock() -> None:
    """Take build/doit.lock for this process's lifetime, waiting (with one line) if it is held."""
    global _held
    if _held is not None:
        return
    paths.BUILD.mkdir(parents=True, exist_ok=True)
    path = paths.BUILD / "doit.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        print(f"zoobuild: another doit run (pid {holder}) holds {path}; waiting for it to finish",
              file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held = fd


def prepare(argv, default_tasks=None) -> None:
    """What every dodo file does after declaring its tasks: check the variables (a bad value
    stops here, one line and exit status 2, before any task creator or task runs), read the
    command line once, make the build directory, and take the run lock for commands that run
    tasks."""
    from tasks import cmdline, params

    params.check_cmdline()
    line = cmdline.remember(argv[1:], default_tasks)
    paths.BUILD.mkdir(parents=True, exist_ok=True)
    if line.command not in READ_ONLY:
        hold_run_lock()

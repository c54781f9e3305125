"""One wrapper for doit `uptodate` checks that ask the outside world (a Docker Engine, files
another run writes, a spec set).

When such a check cannot answer for a reason the task itself will meet and report properly
(bad input, a file that is gone, no Docker Engine), it says "stale", so the task runs and
fails with its one clear line.  Anything else is a bug in the check and raises: a check that
swallowed every exception would turn a typo into a silent rebuild on every run.
"""
from __future__ import annotations

import inspect
import sys

from zoobuild.errors import UserError


def expected_failure(err: BaseException) -> bool:
    """Bad input, an OS-level failure, or a Docker Engine error (docker-py is only imported
    by code that talks to one, so it is looked up, never imported here)."""
    if isinstance(err, (UserError, OSError)):
        return True
    docker_errors = sys.modules.get("docker.errors")
    return docker_errors is not None and isinstance(err, docker_errors.DockerException)


def stale_on_error(check, name: str | None = None):
    """A doit uptodate callable from `check()` or `check(task, values)` returning a truth
    value; an expected failure (see expected_failure) answers False, i.e. stale."""
    takes_task = len(inspect.signature(check).parameters) >= 2

    def uptodate(task, values):
        try:
            return bool(check(task, values) if takes_task else check())
        except Exception as err:
            if expected_failure(err):
                return False
            raise

    uptodate.__name__ = uptodate.__qualname__ = name or getattr(check, "__name__", "check")
    return uptodate

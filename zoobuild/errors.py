"""The one exception type that means "the user gave us something wrong", and the exit
statuses every command line of the project uses:

    0           done
    FAILED (1)  the work itself failed (a converter rejected a model, a run crashed)
    BAD_INPUT (2)  the input was wrong: one line on stderr names what and what was expected;
                argparse's own usage errors exit 2 as well
"""
from __future__ import annotations

import functools
import sys

OK = 0
FAILED = 1
BAD_INPUT = 2


class UserError(Exception):
    """Bad input: the message is one line naming what was wrong and what was expected."""


def report(err: UserError) -> None:
    """The one line a UserError becomes on stderr."""
    print(f"zoobuild: {err}", file=sys.stderr, flush=True)


def cli_main(fn):
    """Decorate a library command line's `main(argv=None) -> int | None`: a UserError becomes
    one line on stderr and exit status BAD_INPUT; None means OK.  Anything else (a programming
    error, a crash inside TensorFlow) keeps its traceback and exits 1 as Python does.

        @cli_main
        def main(argv=None): ...

        if __name__ == "__main__":
            sys.exit(main())
    """
    @functools.wraps(fn)
    def main(*args, **kwargs) -> int:
        try:
            status = fn(*args, **kwargs)
        except UserError as err:
            report(err)
            return BAD_INPUT
        return OK if status is None else int(status)

    return main

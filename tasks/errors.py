"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input: the message is one line naming what was wrong and what was expected."""


def guarded(fn):
    """Wrap a doit python-action so a UserError fails the task with its one line, no traceback."""
    import functools

    @functools.wraps(fn)
    def action(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except UserError as err:
            from doit.exceptions import TaskFailed

            return TaskFailed(f"zoobuild: {err}")
        return None if result is True else result

    return action

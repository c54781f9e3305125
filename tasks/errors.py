"""Turning a UserError (zoobuild.errors) into doit's failure: one line, no traceback."""
from zoobuild.errors import BAD_INPUT, UserError, report


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


def wrap_task_creators(namespace: dict) -> None:
    """Task creators read variables and inputs while doit loads the graph; a UserError there
    (a data_dir that is not there, say) becomes one line and exit status 2, not a traceback."""
    import functools
    import inspect

    def fail(err):
        report(err)
        raise SystemExit(BAD_INPUT)

    for name, creator in list(namespace.items()):
        if not name.startswith("task_") or not callable(creator):
            continue
        if inspect.isgeneratorfunction(creator):
            def wrapped(creator=creator):
                try:
                    yield from creator()
                except UserError as err:
                    fail(err)
        else:
            def wrapped(creator=creator):
                try:
                    return creator()
                except UserError as err:
                    fail(err)
        namespace[name] = functools.wraps(creator)(wrapped)

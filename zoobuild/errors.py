"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input: the message is one line naming what was wrong and what was expected."""

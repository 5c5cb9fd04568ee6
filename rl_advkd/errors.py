"""Errors that the command line reports as one line, without a traceback."""


class UsageError(ValueError):
    """Invalid input from the user: the message names the value and the fix."""

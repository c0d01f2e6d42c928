"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class MedrefError(Exception):
    """A problem with the user's input or environment (bad path, bad value, missing weights).

    The message must be one line that says what is wrong and, where possible, how to fix it.
    """

    exit_code = 2

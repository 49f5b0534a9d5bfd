"""Errors the CLI turns into one line and exit code 2 (user mistakes) or 1 (the stack failed)."""


class UsageError(Exception):
    """Something the user can fix by changing the command line or the environment."""


class StackError(Exception):
    """A process of the stack did not start or stopped answering."""

"""The one exception type a user sees: its message is a single line that says what to fix."""


class RetargetError(Exception):
    """Bad input or a failure the user can act on; the CLI prints it as one line and exits 1."""

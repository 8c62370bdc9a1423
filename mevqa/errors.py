"""The one error type users see.

Library code raises :class:`MevqaError` for bad input (a malformed file, a missing column, a path that does not
exist). The message is one line that names the file, row or field and says what was expected. The CLI prints it
as ``mevqa <command>: error: <message>`` and exits with status 2; anything else is a bug and keeps its traceback.
"""


class MevqaError(Exception):
    """Bad input or a user-fixable condition, described in one line."""

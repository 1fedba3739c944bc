"""Errors that are the user's to fix, which the ``eqlv2`` command reports in one line.

Here rather than beside the code that raises them, so that the command can catch them without
importing torch and mmengine for verbs that need neither.
"""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""

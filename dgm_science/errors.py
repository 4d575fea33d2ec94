"""Errors for bad input; the CLI turns each into one ``dgm: error: ...`` line and exit code 2."""


class DataError(ValueError):
    """Input data is missing, empty or malformed (the message names the file and line)."""

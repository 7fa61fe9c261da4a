"""One exception type for bad input, so the command line can print it without a traceback."""


class SoraError(Exception):
    """Bad input from a user: a config key, a data row, a file, a request.

    The message names what is wrong and where (file:line, config key, field).
    """


class ConfigError(SoraError, ValueError):
    """A config file or value that does not validate."""

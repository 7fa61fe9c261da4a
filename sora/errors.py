"""One exception type for bad input, so the command line can print it without a traceback, and one
warning type for results that are still valid but need a word (the command line prints it as one line)."""


class SoraError(Exception):
    """Bad input from a user: a config key, a data row, a file, a request.

    The message names what is wrong and where (file:line, config key, field).
    """


class ConfigError(SoraError, ValueError):
    """A config file or value that does not validate."""


class SoraWarning(UserWarning):
    """Input Sora could use, but not exactly as given: say what was changed or left out."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of a library's error, for a message that must stay one line."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]

"""Errors a user can act on. The CLI turns them into one-line messages, never tracebacks."""


def shortened(text: str, most: int = 120) -> str:
    """Text for a one-line message (a path, a value a user typed): cut in the middle
    when longer than ``most`` characters, so that both ends still show."""
    return text if len(text) <= most else f"{text[: most // 2]}...{text[-most // 2 :]}"


class SynthError(Exception):
    """Base class: the message is meant for the user as it is. Bad input exits with 2."""

    exit_code = 2


class RunFailed(SynthError):
    """A run stopped by a failure every later call would share (bad key, unknown model)."""

    exit_code = 1


class SetupFailed(RunFailed):
    """A run whose first calls all failed the same way (a refused parameter, nothing
    listening): stopped, and resumable once the set-up is fixed."""


class RunInterrupted(SynthError):
    """Ctrl-C: in-flight calls were cancelled and the run marked interrupted (as SIGINT: 130)."""

    exit_code = 130


class InfeasibleError(SynthError):
    """A request that cannot be served (a length, a size, a split), named with its rule."""


class SourceError(SynthError):
    """Source data (a UCI file) that cannot be found, fetched or read."""


class SourceUnavailable(SourceError):
    """Source data that could not be fetched or kept (no network, a server error, a
    corrupt download, a cache we may not write): exit 1, since the input was fine."""

    exit_code = 1

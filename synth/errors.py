"""Errors a user can act on. The CLI turns them into one-line messages, never tracebacks."""


class SynthError(Exception):
    """Base class: the message is meant for the user as it is."""


class InfeasibleError(SynthError):
    """A request that cannot be served (a length, a size, a split), named with its rule."""


class SourceError(SynthError):
    """Source data (a UCI file) that cannot be found, fetched or read."""

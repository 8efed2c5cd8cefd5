"""Stop a run whose first calls all fail the same way: a parameter the server does not
take, a proxy that answers 400 to a bad key, nothing listening at the URL. Such a run
would otherwise spend its whole attempt budget on calls that cannot succeed."""

from __future__ import annotations

from synth.providers.base import ProviderError

# Failures that say the set-up is wrong, not that one call was unlucky (a connection
# failure counts once its retries are spent).
SETUP_KINDS = frozenset({"bad_request", "connection"})


class FailFast:
    """Watches the final outcome of a run's first ``after`` calls (0: never stops)."""

    def __init__(self, after: int):
        self.after = after
        self.watching = after > 0
        self.failures: list[tuple[ProviderError, int]] = []  # (error, attempt id)

    def answered(self) -> None:
        """A call got an answer (a program or not): the set-up works."""
        self.watching = False

    def failed(self, error: ProviderError, attempt_id: int) -> str | None:
        """A call that failed for good; why the run must stop, once the rule holds."""
        if not self.watching:
            return None
        self.failures.append((error, attempt_id))
        if len(self.failures) < self.after:
            return None
        reason = self.verdict()
        self.watching = False  # decided: mixed failures are single attempts' bad luck
        return reason

    def verdict(self) -> str | None:
        """Why the run must stop, when every call watched failed with one set-up kind
        (the first ``after``, or all of them when the run made fewer)."""
        kinds = {e.kind for e, _ in self.failures}
        if not self.watching or len(kinds) != 1 or not kinds <= SETUP_KINDS:
            return None
        error = self.failures[-1][0]
        n = len(self.failures)
        calls = "the only model call" if n == 1 else f"all {n} first model calls"
        return f"{calls} failed with {error.kind}, none succeeded: {error.server_said or error}"

    @property
    def attempt_ids(self) -> list[int]:
        """The attempts those calls were recorded as: a set-up fault, not the model's."""
        return [a for _, a in self.failures]

"""When a failed model call is tried again, and how long to wait first.

The SDK's own retries are switched off: this policy is the only one, so every failed
HTTP call is seen by the provider, reported and counted, and the total is one number
(`max_retries`) instead of a product of two. See docs/faults.md.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from synth.config import default
from synth.providers.base import ProviderError

# Failures that may pass: throttling, server trouble, a slow or lost reply, a body
# mangled on the way. The rest (bad request, bad key, unknown model, no quota) would
# fail the same way again.
RETRIED_KINDS = frozenset({"rate_limit", "server", "timeout", "connection", "bad_response"})


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_retries` retries per call, waiting exponential backoff with jitter,
    or what the server asked for in retry-after; no wait exceeds `max_delay`."""

    max_retries: int = default("max_retries")
    base_delay: float = default("retry_base_delay")
    max_delay: float = default("retry_max_delay")

    def __post_init__(self):
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ProviderError(
                f"retry settings must not be negative (got {self})", kind="config", fatal=True
            )

    def next_wait(self, call: int, error: ProviderError, retry_after: float | None) -> float | None:
        """Seconds to wait before calling again after failed call number `call` (from 1),
        or None when that failure is final."""
        if error.fatal or error.kind not in RETRIED_KINDS or call > self.max_retries:
            return None
        if retry_after is not None:
            # Honoured as asked, but capped: the total wait of a call stays bounded.
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2 ** (call - 1), self.max_delay)
        # Full backoff down to half of it, so concurrent calls that failed together
        # do not all come back at the same instant.
        return backoff * random.uniform(0.5, 1.0)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The wait a reply asks for, in seconds: `retry-after-ms` (OpenAI's), else
    `retry-after` as seconds or as an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            seconds = float(headers[name]) / scale
        except (KeyError, ValueError):
            continue
        if not math.isnan(seconds):
            return seconds
    try:
        return email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time()
    except (KeyError, TypeError, ValueError):
        return None

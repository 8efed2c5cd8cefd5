"""The interface every provider shares, so the runner never knows which one it drives.

Online providers (the OpenAI APIs) and offline proposers (no key, no network) take the
same `ProposeRequest` and return the same `Proposal`; the runner records either as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from synth.errors import SynthError


@dataclass(frozen=True)
class ProposeRequest:
    """One attempt's question: the prompt a model sees, plus what offline proposers need."""

    prompt: str
    # The training examples shown in the prompt; offline proposers fit on these.
    train: list[tuple[str, int]]
    kind: str  # binary | decimal | graph | tabular
    # Offline proposers derive their randomness from these, never from global state.
    seed: int
    trial: int
    attempt: int
    # The validation split, for the classical learners' model selection (never the test
    # split); a model is not shown it.
    val: list[tuple[str, int]] = field(default_factory=list)
    # The trial's row id: what names its request in a Batch API input file.
    trial_id: int | None = None


@dataclass(frozen=True)
class Proposal:
    """One answer and what it cost. Empty output or a refusal is a proposal, not an error."""

    text: str | None  # None when the model returned no text (refusal, empty, cut off)
    status: str  # "completed", "incomplete", "failed", ...
    incomplete_reason: str | None  # e.g. "max_output_tokens", "content_filter"
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    tool_calls: int
    tool_output_chars: int
    duration_ms: float
    response_id: str | None
    raw: dict | None  # the response as received, JSON-able
    request: dict  # the request body sent, JSON-able; never holds the API key


class Provider(Protocol):
    name: str  # "openai-responses", "openai-chat", ...

    async def propose(self, req: ProposeRequest) -> Proposal: ...

    async def aclose(self) -> None: ...


class ProviderError(SynthError):
    """A call that failed after the provider's own retries.

    `fatal` errors (bad or missing key, unknown model, exhausted quota) would fail every
    later call the same way, so the run must stop; the others belong to one attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        fatal: bool = False,
        status_code: int | None = None,
        server_said: str | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.fatal = fatal
        self.status_code = status_code
        # The server's own words, e.g. "400 Unsupported parameter: 'reasoning.effort'".
        self.server_said = server_said

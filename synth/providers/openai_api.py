"""Providers over the OpenAI APIs: Responses (the default) and Chat Completions.

Chat Completions is what OpenAI-compatible servers (vLLM, Ollama, gateways) speak, via
a base URL. The SDK does the retrying (429, 5xx, timeouts, connection errors, honouring
retry-after); whatever is left after `max_retries` becomes one `ProviderError` whose
`kind` the runner records and whose `fatal` tells it to stop the run.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod

import openai

from synth.providers.base import Proposal, ProposeRequest, Provider, ProviderError

from synth.config import API_MODES

# Most specific first: APITimeoutError is an APIConnectionError, and every status
# error is an APIStatusError (the last row catches 400, 409, 422 and other 4xx).
_ERROR_KINDS = (
    (openai.APITimeoutError, "timeout", False),
    (openai.APIConnectionError, "connection", False),
    (openai.APIResponseValidationError, "bad_response", False),
    (openai.AuthenticationError, "auth", True),
    (openai.PermissionDeniedError, "auth", True),
    (openai.NotFoundError, "not_found", True),
    (openai.RateLimitError, "rate_limit", False),
    (openai.InternalServerError, "server", False),
    (openai.APIStatusError, "bad_request", False),
)

# Chat finish reasons that mean the answer was cut short, named as the Responses API
# names its incomplete reasons so both modes record the same words.
_CHAT_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _tokens(usage, *path: str) -> int:
    """A count inside a usage object; 0 when any step is absent (gateways omit details)."""
    for name in path:
        usage = getattr(usage, name, None)
    return usage or 0


class _OpenAIProvider(ABC):
    """What both APIs share: the client, the key check, timing and error mapping."""

    name: str

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        reasoning_effort: str | None = None,
        max_output_tokens: int | None = None,
    ):
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ProviderError(
                "OPENAI_API_KEY is not set: export it before running "
                "(a local OpenAI-compatible server accepts any non-empty value)",
                kind="auth",
                fatal=True,
            )
        self.model = model
        self.reasoning_effort = reasoning_effort
        self.max_output_tokens = max_output_tokens
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            # None keeps the SDK's default (10 minutes); the SDK reads None as "no limit".
            timeout=openai.NOT_GIVEN if timeout is None else timeout,
            max_retries=max_retries,
        )

    async def propose(self, req: ProposeRequest) -> Proposal:
        body = self._body(req.prompt)
        start = time.perf_counter()
        try:
            response = await self._create(body)
        except openai.OpenAIError as err:
            raise self._error(err) from err
        except json.JSONDecodeError as err:  # a JSON content type over a non-JSON body
            raise self._bad_response(f"the body is not JSON ({err})") from err
        duration_ms = (time.perf_counter() - start) * 1000
        # Without strict validation the SDK hands back the text of a non-JSON body.
        if not isinstance(response, openai.BaseModel):
            raise self._bad_response(f"the body is not a response object: {str(response)[:200]!r}")
        try:
            fields = self._read(response)
        except (AttributeError, IndexError, TypeError) as err:
            raise self._bad_response(f"a field is missing or malformed ({err})") from err
        return Proposal(
            **fields,
            duration_ms=duration_ms,
            raw=response.model_dump(mode="json", exclude_unset=True),
            request=body,
        )

    async def aclose(self) -> None:
        await self.client.close()

    def _error(self, err: openai.OpenAIError) -> ProviderError:
        kind, fatal = next(
            ((kind, fatal) for cls, kind, fatal in _ERROR_KINDS if isinstance(err, cls)),
            ("api_error", False),
        )
        message = f"{self.name}: {err}"
        if kind == "rate_limit" and getattr(err, "code", None) == "insufficient_quota":
            # Out of credit: every later call would fail the same way.
            kind, fatal = "quota", True
        elif kind == "auth":
            message += " (check OPENAI_API_KEY)"
        elif kind == "not_found":
            message += f" (unknown model {self.model!r} or wrong base URL {self.client.base_url})"
        return ProviderError(
            message, kind=kind, fatal=fatal, status_code=getattr(err, "status_code", None)
        )

    def _bad_response(self, why: str) -> ProviderError:
        return ProviderError(
            f"{self.name}: unreadable response: {why}", kind="bad_response", status_code=200
        )

    @abstractmethod
    def _body(self, prompt: str) -> dict:
        """The request body: plain JSON, so it can be recorded as sent."""

    @abstractmethod
    async def _create(self, body: dict):
        """Send the body through the SDK; returns its response object."""

    @abstractmethod
    def _read(self, response) -> dict:
        """The Proposal fields a response holds (all but timing, raw and request)."""


class ResponsesProvider(_OpenAIProvider):
    """`POST /v1/responses`: reasoning effort, verbosity and the hosted code interpreter."""

    name = "openai-responses"

    def __init__(
        self,
        *,
        verbosity: str | None = None,
        tool_choice: str | None = None,
        enable_code_interpreter: bool = False,
        **common,
    ):
        super().__init__(**common)
        self.verbosity = verbosity
        self.tool_choice = tool_choice
        self.enable_code_interpreter = enable_code_interpreter

    def _body(self, prompt: str) -> dict:
        body: dict = {"model": self.model, "input": [{"role": "user", "content": prompt}]}
        if self.reasoning_effort is not None:
            body["reasoning"] = {"effort": self.reasoning_effort}
        if self.max_output_tokens is not None:
            body["max_output_tokens"] = self.max_output_tokens
        if self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice
        if self.verbosity is not None:
            body["text"] = {"verbosity": self.verbosity}
        if self.enable_code_interpreter:
            body["tools"] = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        return body

    async def _create(self, body: dict):
        return await self.client.responses.create(**body)

    def _read(self, response) -> dict:
        usage = response.usage
        calls = [item for item in response.output if item.type == "code_interpreter_call"]
        return dict(
            text=response.output_text or None,
            # Gateways may leave the status out of a finished response.
            status=response.status or "completed",
            incomplete_reason=getattr(response.incomplete_details, "reason", None),
            input_tokens=_tokens(usage, "input_tokens"),
            cached_tokens=_tokens(usage, "input_tokens_details", "cached_tokens"),
            output_tokens=_tokens(usage, "output_tokens"),
            reasoning_tokens=_tokens(usage, "output_tokens_details", "reasoning_tokens"),
            tool_calls=len(calls),
            tool_output_chars=sum(
                len(out.logs) for call in calls for out in call.outputs or () if out.type == "logs"
            ),
            response_id=response.id,
        )


class ChatProvider(_OpenAIProvider):
    """`POST /v1/chat/completions`, for any OpenAI-compatible server."""

    name = "openai-chat"

    def _body(self, prompt: str) -> dict:
        body: dict = {"model": self.model, "messages": [{"role": "user", "content": prompt}]}
        if self.reasoning_effort is not None:
            body["reasoning_effort"] = self.reasoning_effort
        if self.max_output_tokens is not None:
            body["max_completion_tokens"] = self.max_output_tokens
        return body

    async def _create(self, body: dict):
        return await self.client.chat.completions.create(**body)

    def _read(self, response) -> dict:
        choice = response.choices[0]
        usage = response.usage
        reason = _CHAT_INCOMPLETE.get(choice.finish_reason)
        return dict(
            text=choice.message.content or None,
            status="incomplete" if reason else "completed",
            incomplete_reason=reason,
            input_tokens=_tokens(usage, "prompt_tokens"),
            cached_tokens=_tokens(usage, "prompt_tokens_details", "cached_tokens"),
            output_tokens=_tokens(usage, "completion_tokens"),
            reasoning_tokens=_tokens(usage, "completion_tokens_details", "reasoning_tokens"),
            tool_calls=0,
            tool_output_chars=0,
            response_id=response.id,
        )


def make_provider(
    api_mode: str,
    *,
    model: str,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int = 2,
    reasoning_effort: str | None = None,
    max_output_tokens: int | None = None,
    verbosity: str | None = None,
    tool_choice: str | None = None,
    enable_code_interpreter: bool = False,
) -> Provider:
    """The provider for an API mode; raises a fatal ProviderError for what cannot run.

    `api_key` falls back to OPENAI_API_KEY and `base_url` to OPENAI_BASE_URL (then
    api.openai.com). Chat Completions has no verbosity or tool choice here, so those
    settings are ignored in "chat" mode; the code interpreter is refused there, since
    silently dropping a requested tool would change the experiment.
    """
    common = dict(
        model=model,
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        reasoning_effort=reasoning_effort,
        max_output_tokens=max_output_tokens,
    )
    if api_mode == "responses":
        return ResponsesProvider(
            verbosity=verbosity,
            tool_choice=tool_choice,
            enable_code_interpreter=enable_code_interpreter,
            **common,
        )
    if api_mode == "chat":
        if enable_code_interpreter:
            raise ProviderError(
                "the code interpreter needs the Responses API (api mode 'responses'), "
                "not Chat Completions",
                kind="config",
                fatal=True,
            )
        return ChatProvider(**common)
    raise ProviderError(
        f"unknown API mode {api_mode!r} (known: {', '.join(API_MODES)})", kind="config", fatal=True
    )

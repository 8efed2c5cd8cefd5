"""Providers over the OpenAI APIs: Responses (the default) and Chat Completions.

Chat Completions is what OpenAI-compatible servers (vLLM, Ollama, gateways) speak, via
a base URL. Retrying is ours, not the SDK's (its `max_retries` is 0; see retry.py):
each failed HTTP call is classified, reported to `on_failed_call`, and retried or not;
the last failure becomes one `ProviderError` whose `kind` the runner records and whose
`fatal` tells it to stop the run.

A reply is read from the JSON the server sent (the SDK's `with_raw_response`), not from
the SDK's response model: the raw JSON is what we record anyway, the few fields we need
are plain lookups, and building the model would cost the event loop more per call than
the rest of our handling of a reply (docs/BENCHMARKS.md, "Grid concurrency").
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import AnyStr

import httpx2  # the openai SDK's HTTP client
import openai

from synth.config import API_MODES, ApiSettings
from synth.providers.base import Proposal, ProposeRequest, Provider, ProviderError
from synth.providers.retry import RetryPolicy, retry_after

# Told of every failed HTTP call: (kind, status_code, message, call number from 1,
# seconds until the next try or None when this failure is the last).
OnFailedCall = Callable[[str, int | None, str, int, float | None], None]

# Most specific first: APITimeoutError is an APIConnectionError, and every status
# error is an APIStatusError (the last row catches 400, 409, 422 and other 4xx).
_ERROR_KINDS = (
    (openai.APITimeoutError, "timeout", False),
    (openai.APIConnectionError, "connection", False),
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


def _field(obj, *path: str):
    """A value inside nested JSON objects; None when a step is absent, null or not an
    object (gateways omit details, or send `[]` for an empty object)."""
    for name in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(name)
    return obj


def _tokens(usage, *path: str) -> int:
    """A count inside a usage object, as an int ("12" and 12.0 are 12); 0 when absent."""
    try:
        return int(_field(usage, *path) or 0)
    except (TypeError, ValueError):
        return 0


def _text(content) -> str | None:
    """A chat message's text: a string, or the text parts of a list of parts (as some
    compatible servers send, e.g. with reasoning parts before the answer)."""
    if isinstance(content, list):
        content = "".join(_field(p, "text") or "" for p in content if _field(p, "type") == "text")
    return content if isinstance(content, str) and content else None


def _retry_after(error: ProviderError) -> float | None:
    """The wait asked for by the reply behind `error`, if there was one."""
    response = getattr(error.__cause__, "response", None)
    return retry_after(response.headers if response is not None else None)


def _root_cause(err: BaseException) -> str:
    """The innermost exception behind `err` that says something, e.g. " (ConnectionResetError:
    [Errno 104] Connection reset by peer)"; the SDK's own message is only "Connection error."."""
    said, seen, cause = None, set(), err.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        said = cause if str(cause) else said
        cause = cause.__cause__ or cause.__context__
    return f" ({type(said).__name__}: {said})" if said else ""


@functools.cache
def _tls_context():
    """The SDK's default TLS context, made once per process: loading the system's
    certificates costs 0.1-0.2 s, once per client otherwise (a study has one per cell)."""
    return httpx2.create_ssl_context()


class _OpenAIProvider(ABC):
    """What both APIs share: the client, the key check, timing, retries and error mapping."""

    name: str

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        key_env: str = "OPENAI_API_KEY",
        base_url: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        on_failed_call: OnFailedCall | None = None,
        reasoning_effort: str | None = None,
        max_output_tokens: int | None = None,
    ):
        self.key_env = key_env
        if not (api_key or os.environ.get(key_env)):
            raise self._no_key()
        # Every key sent, masked wherever a server echoes one (kept in memory only).
        self._keys: set[str] = {api_key} if api_key else set()
        self._given_key = api_key
        self.model = model
        self.reasoning_effort = reasoning_effort
        self.max_output_tokens = max_output_tokens
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.on_failed_call = on_failed_call
        self.fatal: ProviderError | None = None  # once set, no more calls are made
        self.client = openai.AsyncOpenAI(
            # A key given is used as is; else the variable is read at each call, so a
            # key rotated during a long run is used from the next call on.
            api_key=api_key or self._key_now,
            base_url=base_url,
            # None keeps the SDK's default (10 minutes); the SDK reads None as "no limit".
            timeout=openai.NOT_GIVEN if timeout is None else timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
        )

    async def propose(self, req: ProposeRequest) -> Proposal:
        """The proposal, after up to `retry.max_retries` retries of failed calls.

        After a fatal failure every later call would fail the same way, so none is made:
        each later propose raises it again at once. (The runner stops on the first, but a
        trial waiting for a call slot may get it before the others are cancelled.)
        """
        body = self._body(req.prompt)
        return await self.retrying(lambda: self._call(body))

    async def retrying(self, call: Callable[[], Awaitable[Proposal]], *, sleep: bool = True) -> Proposal:
        """What ``call()`` (one try) returns, after up to `retry.max_retries` retries of its
        failures, each reported to `on_failed_call`. ``sleep`` False: a retry needs no wait
        of ours (a Batch API line is tried again in the next wave), reported as 0 s."""
        for call_number in itertools.count(1):
            if self.fatal is not None:
                raise ProviderError(
                    str(self.fatal), kind=self.fatal.kind, fatal=True, status_code=self.fatal.status_code
                )
            try:
                return await call()
            except ProviderError as error:
                wait = self.retry.next_wait(call_number, error, _retry_after(error))
                if not sleep and wait is not None:
                    wait = 0.0
                if self.on_failed_call is not None:
                    self.on_failed_call(error.kind, error.status_code, str(error), call_number, wait)
                if error.fatal:
                    self.fatal = error
                if wait is None:
                    raise
            await asyncio.sleep(wait)

    async def _call(self, body: dict) -> Proposal:
        """One HTTP call, its failure as a ProviderError."""
        start = time.perf_counter()
        try:
            # A deadline on the whole reply: the SDK's timeout bounds each read, so a
            # body trickling in would otherwise never time out.
            async with asyncio.timeout(self.timeout):
                content = (await self._create(body)).http_response.content
        except openai.OpenAIError as err:
            raise self._error(err) from err
        except TimeoutError as err:
            raise self._timed_out() from err
        duration_ms = (time.perf_counter() - start) * 1000
        content = self._masked(content)
        try:
            reply = json.loads(content)
        except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, or nested too deep
            raise self._bad_response(f"the body is not JSON ({err}): {content[:200]!r}") from err
        return self.proposal(reply, body, duration_ms, content)

    def proposal(self, reply, body: dict, duration_ms: float, content: bytes | None = None) -> Proposal:
        """A 200 reply's JSON (a direct call's, read from ``content``, or a Batch API output
        line's ``response.body``) as the Proposal it holds; a bad_response error when it
        holds none."""
        if not isinstance(reply, dict):
            shown = json.dumps(reply).encode() if content is None else content
            raise self._bad_response(f"the body is not a JSON object: {shown[:200]!r}")
        try:
            fields = self._read(reply)
        except (AttributeError, IndexError, KeyError, TypeError) as err:
            raise self._bad_response(f"a field is missing or malformed ({err!r})") from err
        return Proposal(**fields, duration_ms=duration_ms, raw=reply, request=body)

    def status_error(self, status_code: int, body) -> ProviderError:
        """The error a reply of ``status_code`` with JSON ``body`` is (a Batch API line that
        failed), classified as a direct call's status error is."""
        response = httpx2.Response(status_code, request=httpx2.Request("POST", str(self.client.base_url)))
        err = self.client._make_status_error(
            f"Error code: {status_code} - {body}", body=body, response=response
        )
        return self._error(err)

    def body(self, prompt: str) -> dict:
        """The request body of one call of ``prompt``, as sent and recorded."""
        return self._body(prompt)

    async def aclose(self) -> None:
        await self.client.close()

    def key(self) -> str:
        """The key a call sends now: the one given, else the variable's value now."""
        key = self._given_key or os.environ.get(self.key_env)
        if not key:
            raise self._no_key()
        self._keys.add(key)
        return key

    async def _key_now(self) -> str:
        """What the SDK asks for before each call."""
        return self.key()

    def _no_key(self) -> ProviderError:
        return ProviderError(
            f"{self.key_env} is not set: export it before running "
            "(a local OpenAI-compatible server accepts any non-empty value)",
            kind="auth",
            fatal=True,
        )

    def _error(self, err: openai.OpenAIError) -> ProviderError:
        kind, fatal = next(
            ((kind, fatal) for cls, kind, fatal in _ERROR_KINDS if isinstance(err, cls)),
            ("api_error", False),
        )
        status = getattr(err, "status_code", None)
        if kind == "timeout":
            return self._timed_out()
        if status == 408:  # the server's own timeout: retried as ours is
            kind = "timeout"
        message = f"{self.name}: {err}"
        if kind == "rate_limit" and getattr(err, "code", None) == "insufficient_quota":
            # Out of credit: every later call would fail the same way.
            kind, fatal = "quota", True
        elif kind == "connection":
            message += _root_cause(err)
        elif kind == "auth":
            message += f" (check {self.key_env})"
        elif kind == "not_found":
            message += f" (unknown model {self.model!r} or wrong base URL {self.client.base_url})"
        said = _field(getattr(err, "body", None), "message")
        return ProviderError(
            self._clean(message),
            kind=kind,
            fatal=fatal,
            status_code=status,
            server_said=self._clean(f"{status} {said}") if status and isinstance(said, str) else None,
        )

    def _timed_out(self) -> ProviderError:
        limit = f"{self.timeout:g}s (--timeout)" if self.timeout else "the SDK's default timeout"
        return ProviderError(f"{self.name}: no complete reply within {limit}", kind="timeout")

    def _bad_response(self, why: str) -> ProviderError:
        return ProviderError(
            self._clean(f"{self.name}: unreadable response: {why}"),
            kind="bad_response",
            status_code=200,
        )

    def _clean(self, message: str) -> str:
        """A message fit to record and show: one line, and without the key even when a
        server echoes it."""
        return self._masked(" ".join(message.split()))

    def _masked(self, data: AnyStr) -> AnyStr:
        """``data`` (a message, or a reply's body) with every key sent masked, should a
        server echo one (a placeholder key for a local server, a few characters long, is
        no secret and is left alone)."""
        for key in self._keys:
            if len(key) >= 8:
                shown = f"[{self.key_env}]"
                data = (
                    data.replace(key.encode(), shown.encode())
                    if isinstance(data, bytes)
                    else data.replace(key, shown)
                )
        return data

    @abstractmethod
    def _body(self, prompt: str) -> dict:
        """The request body: plain JSON, so it can be recorded as sent."""

    @abstractmethod
    async def _create(self, body: dict):
        """Send the body through the SDK; returns its raw response (`with_raw_response`)."""

    @abstractmethod
    def _read(self, reply: dict) -> dict:
        """The Proposal fields the reply's JSON holds (all but timing, raw and request)."""


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
        # As extra_body, the body goes out exactly as built and recorded: the SDK's
        # transform of typed parameters (key aliases, iterables to lists) has nothing to
        # change in plain JSON, and walking the prompt's message list costs ~0.35 ms a call.
        return await self.client.responses.with_raw_response.create(extra_body=body)

    def _read(self, reply: dict) -> dict:
        usage, output = reply.get("usage"), reply["output"]
        calls = [item for item in output if item.get("type") == "code_interpreter_call"]
        # As the SDK's `output_text`: the text parts of the message items, joined.
        texts = [
            part.get("text") or ""
            for item in output
            if item.get("type") == "message"
            for part in item["content"]
            if part.get("type") == "output_text"
        ]
        logs = [
            out.get("logs") or ""
            for call in calls
            for out in call.get("outputs") or ()
            if out.get("type") == "logs"
        ]
        return dict(
            text="".join(texts) or None,
            # Gateways may leave the status out of a finished response.
            status=reply.get("status") or "completed",
            incomplete_reason=_field(reply, "incomplete_details", "reason"),
            input_tokens=_tokens(usage, "input_tokens"),
            cached_tokens=_tokens(usage, "input_tokens_details", "cached_tokens"),
            output_tokens=_tokens(usage, "output_tokens"),
            reasoning_tokens=_tokens(usage, "output_tokens_details", "reasoning_tokens"),
            tool_calls=len(calls),
            tool_output_chars=sum(map(len, logs)),
            response_id=reply.get("id"),
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
        # Not as extra_body, as Responses does: this method requires `model` and
        # `messages` as arguments, so the SDK transforms the body (and orders its keys).
        return await self.client.chat.completions.with_raw_response.create(**body)

    def _read(self, reply: dict) -> dict:
        choice = reply["choices"][0]
        usage = reply.get("usage")
        reason = _CHAT_INCOMPLETE.get(choice.get("finish_reason"))
        return dict(
            text=_text(choice["message"].get("content")),
            status="incomplete" if reason else "completed",
            incomplete_reason=reason,
            input_tokens=_tokens(usage, "prompt_tokens"),
            cached_tokens=_tokens(usage, "prompt_tokens_details", "cached_tokens"),
            output_tokens=_tokens(usage, "completion_tokens"),
            reasoning_tokens=_tokens(usage, "completion_tokens_details", "reasoning_tokens"),
            tool_calls=0,
            tool_output_chars=0,
            response_id=reply.get("id"),
        )


def make_provider(
    settings: ApiSettings,
    *,
    api_key: str | None = None,
    key_env: str = "OPENAI_API_KEY",
    on_failed_call: OnFailedCall | None = None,
) -> Provider:
    """The provider for ``settings``; raises a fatal ProviderError for what cannot run.

    Without `api_key`, the key is read from the variable `key_env` at each call
    (never stored); the base URL falls back to OPENAI_BASE_URL (then
    api.openai.com). Chat Completions has no verbosity or tool choice here, so those
    settings are ignored in "chat" mode; the code interpreter is refused there, since
    silently dropping a requested tool would change the experiment. The retry settings
    make the RetryPolicy (the SDK does not retry); `on_failed_call` is told of every
    failed HTTP call, retried or not.
    """
    common = dict(
        model=settings.model,
        api_key=api_key,
        key_env=key_env,
        base_url=settings.base_url,
        timeout=settings.timeout,
        retry=RetryPolicy(settings.max_retries, settings.retry_base_delay, settings.retry_max_delay),
        on_failed_call=on_failed_call,
        reasoning_effort=settings.reasoning_effort,
        max_output_tokens=settings.max_output_tokens,
    )
    api_mode = settings.mode
    if api_mode == "responses":
        return ResponsesProvider(
            verbosity=settings.verbosity,
            tool_choice=settings.tool_choice,
            enable_code_interpreter=settings.enable_code_interpreter,
            **common,
        )
    if api_mode == "chat":
        if settings.enable_code_interpreter:
            raise ProviderError(
                "the code interpreter needs the Responses API (api mode 'responses'), not Chat Completions",
                kind="config",
                fatal=True,
            )
        return ChatProvider(**common)
    raise ProviderError(
        f"unknown API mode {api_mode!r} (known: {', '.join(API_MODES)})", kind="config", fatal=True
    )

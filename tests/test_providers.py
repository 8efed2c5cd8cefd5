"""The OpenAI providers against a real loopback server speaking the OpenAI wire formats."""

import asyncio
import json
import socket

import pytest
from openai.types.responses import Response
from openai_server import (
    DEFAULT_TEXT,
    Reply,
    Usage,
    chat_body,
    code_interpreter_call,
    error_body,
    in_order,
    responses_body,
)

from synth.config import ApiSettings
from synth.errors import SynthError
from synth.providers import ProposeRequest, ProviderError, make_provider

pytestmark = pytest.mark.anyio

KEY = "sk-test-not-a-real-key"
REQ = ProposeRequest(
    prompt="Find f.\n0101 -> 1\n1100 -> 0",
    train=[("0101", 1), ("1100", 0)],
    kind="binary",
    seed=7,
    trial=0,
    attempt=1,
)
CODE_INTERPRETER = [{"type": "code_interpreter", "container": {"type": "auto"}}]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def make(openai_server):
    """Providers pointed at the loopback server (no retries unless asked), closed after."""
    made = []

    def make(api_mode="responses", api_key=KEY, **settings):
        settings = {"model": "gpt-test", "base_url": openai_server.base_url, "max_retries": 0, **settings}
        made.append(make_provider(ApiSettings(mode=api_mode, **settings), api_key=api_key))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def usage(p) -> tuple[int, int, int, int]:
    return (p.input_tokens, p.cached_tokens, p.output_tokens, p.reasoning_tokens)


async def propose_error(provider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await provider.propose(REQ)
    return info.value


async def test_responses_records_text_usage_and_request(make, openai_server):
    openai_server.script = lambda path, body: Reply(usage=Usage(500, 128, 90, 60))
    provider = make(reasoning_effort="high", max_output_tokens=4000, verbosity="low", tool_choice="auto")
    p = await provider.propose(REQ)

    assert provider.name == "openai-responses"
    assert (p.text, p.status, p.incomplete_reason) == (DEFAULT_TEXT, "completed", None)
    assert usage(p) == (500, 128, 90, 60)
    assert (p.tool_calls, p.tool_output_chars) == (0, 0)
    assert p.response_id.startswith("resp_") and p.raw["id"] == p.response_id
    assert p.raw["usage"]["input_tokens_details"]["cached_tokens"] == 128
    assert p.duration_ms > 0
    [sent] = openai_server.requests
    assert sent.path == "/v1/responses"
    assert (
        sent.body
        == p.request
        == {
            "model": "gpt-test",
            "input": [{"role": "user", "content": REQ.prompt}],
            "reasoning": {"effort": "high"},
            "max_output_tokens": 4000,
            "tool_choice": "auto",
            "text": {"verbosity": "low"},
        }
    )
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in json.dumps([p.request, p.raw]) + repr(openai_server.requests)


async def test_unset_settings_are_not_sent(make, openai_server):
    await make().propose(REQ)
    await make("chat").propose(REQ)
    sent = [set(r.body) for r in openai_server.requests]
    assert sent == [{"model", "input"}, {"model", "messages"}]


async def test_code_interpreter_calls_are_counted(make, openai_server):
    calls = [code_interpreter_call("print(1)", ["1\n"]), code_interpreter_call("x", ["ab", "cde"])]

    def script(path, body):
        sent = responses_body(body, Reply())
        sent["output"][1:1] = calls
        return Reply(raw_body=sent)

    openai_server.script = script
    p = await make(enable_code_interpreter=True).propose(REQ)
    assert openai_server.requests[0].body["tools"] == CODE_INTERPRETER
    assert (p.tool_calls, p.tool_output_chars) == (2, len("1\nabcde"))
    assert p.text == DEFAULT_TEXT
    assert [item["type"] for item in p.raw["output"]] == [
        "reasoning",
        "code_interpreter_call",
        "code_interpreter_call",
        "message",
    ]


async def test_raw_is_the_body_received(make, openai_server):
    sent = responses_body({"model": "gpt-test"}, Reply(text="hello"))
    openai_server.script = lambda path, body: Reply(raw_body=sent)
    p = await make().propose(REQ)
    assert p.raw == sent


async def test_text_is_the_sdks_output_text(make, openai_server):
    """Read from the JSON, the text is what the SDK's `Response.output_text` gives: the
    output_text parts of every message item, joined; refusals and other items left out."""
    sent = responses_body({"model": "gpt-test"}, Reply(text="part one, ", refusal="no"))
    message = sent["output"][1]
    message["content"].append({"type": "output_text", "text": "part two", "annotations": []})
    sent["output"].append({**message, "content": [{"type": "output_text", "text": "; again"}]})
    openai_server.script = lambda path, body: Reply(raw_body=sent)
    p = await make().propose(REQ)
    assert p.text == Response.construct(**sent).output_text == "part one, part two; again"


@pytest.mark.parametrize("api_mode", ["responses", "chat"])
async def test_a_reply_without_its_id_keeps_its_answer(make, openai_server, api_mode):
    """Some compatible servers send no id: the answer, paid for, is still an answer."""
    build = responses_body if api_mode == "responses" else chat_body
    sent = {k: v for k, v in build({"model": "gpt-test"}, Reply()).items() if k != "id"}
    openai_server.script = lambda path, body: Reply(raw_body=sent)
    p = await make(api_mode).propose(REQ)
    assert (p.text, p.response_id) == (DEFAULT_TEXT, None)


async def test_loose_gateway_shapes_are_read_not_refused(make, openai_server):
    """An empty usage sent as [], counts as strings or floats, details that are not
    objects, an output item without a type: read as the SDK would have, not refused."""
    sent = responses_body({"model": "gpt-test"}, Reply())
    sent["usage"].update(input_tokens="120", output_tokens=40.0, output_tokens_details=0)
    sent["output"].insert(0, {"id": "x", "summary": []})
    sent["incomplete_details"] = "max_output_tokens"
    replies = [Reply(raw_body=sent), Reply(raw_body={**sent, "usage": []})]
    openai_server.script = lambda path, body: replies.pop(0)
    p, empty = [await make().propose(REQ) for _ in range(2)]
    assert (p.text, usage(p), p.incomplete_reason) == (DEFAULT_TEXT, (120, 0, 40, 0), None)
    assert (empty.text, usage(empty)) == (DEFAULT_TEXT, (0, 0, 0, 0))


@pytest.mark.parametrize(
    "content, text",
    [
        (
            [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "def f"},
                {"type": "text", "text": "(x): ..."},
            ],
            "def f(x): ...",
        ),
        (42, None),
        ([], None),
    ],
    ids=["parts", "number", "no-parts"],
)
async def test_chat_content_as_parts_is_its_text_parts(make, openai_server, content, text):
    def script(path, body):
        sent = chat_body(body, Reply())
        sent["choices"][0]["message"]["content"] = content
        return Reply(raw_body=sent)

    openai_server.script = script
    p = await make("chat").propose(REQ)
    assert p.text == text


async def test_incomplete_response(make, openai_server):
    openai_server.script = lambda path, body: Reply(text="", incomplete="max_output_tokens")
    p = await make().propose(REQ)
    assert (p.text, p.status, p.incomplete_reason) == (None, "incomplete", "max_output_tokens")
    assert p.output_tokens == 40


@pytest.mark.parametrize("api_mode", ["responses", "chat"])
async def test_refusal_is_a_proposal_without_text(make, openai_server, api_mode):
    openai_server.script = lambda path, body: Reply(text=None, refusal="I can't help with that.")
    p = await make(api_mode).propose(REQ)
    assert (p.text, p.status) == (None, "completed")


async def test_chat_records_text_usage_and_request(make, openai_server):
    openai_server.script = lambda path, body: Reply(usage=Usage(300, 64, 50, 20))
    provider = make("chat", reasoning_effort="low", max_output_tokens=2000, verbosity="low")
    p = await provider.propose(REQ)

    assert provider.name == "openai-chat"
    assert (p.text, p.status, p.incomplete_reason) == (DEFAULT_TEXT, "completed", None)
    assert usage(p) == (300, 64, 50, 20)
    assert p.response_id.startswith("chatcmpl-") and p.raw["object"] == "chat.completion"
    [sent] = openai_server.requests
    assert sent.path == "/v1/chat/completions"
    assert (
        sent.body
        == p.request
        == {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": REQ.prompt}],
            "reasoning_effort": "low",
            "max_completion_tokens": 2000,
        }
    )


async def test_chat_length_finish_is_incomplete(make, openai_server):
    openai_server.script = lambda path, body: Reply(text="def f(x", incomplete="max_output_tokens")
    p = await make("chat").propose(REQ)
    assert (p.text, p.status, p.incomplete_reason) == ("def f(x", "incomplete", "max_output_tokens")


async def test_chat_without_usage_details_counts_zero(make, openai_server):
    def script(path, body):
        sent = chat_body(body, Reply(usage=Usage(11, 5, 7, 3)))
        del sent["usage"]["prompt_tokens_details"], sent["usage"]["completion_tokens_details"]
        return Reply(raw_body=sent)

    openai_server.script = script
    p = await make("chat").propose(REQ)
    assert usage(p) == (11, 0, 7, 0)


@pytest.mark.parametrize("status, kind", [(401, "auth"), (403, "auth"), (404, "not_found")])
async def test_auth_and_unknown_model_are_fatal_and_not_retried(make, openai_server, status, kind):
    openai_server.script = lambda path, body: Reply(status=status)
    err = await propose_error(make(max_retries=2))
    assert (err.kind, err.fatal, err.status_code) == (kind, True, status)
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize(
    "first",
    [
        Reply(status=500, headers={"retry-after-ms": "5"}),
        Reply(status=429, headers={"retry-after": "0"}),
    ],
    ids=["500", "429"],
)
async def test_a_failed_call_is_retried_then_succeeds(make, openai_server, first):
    openai_server.script = in_order(first, Reply())
    p = await make(max_retries=2).propose(REQ)
    assert p.text == DEFAULT_TEXT
    assert len(openai_server.requests) == 2


async def test_retries_exhausted_is_a_server_error(make, openai_server):
    openai_server.script = lambda path, body: Reply(status=503, headers={"retry-after-ms": "5"})
    err = await propose_error(make(max_retries=1))
    assert (err.kind, err.fatal, err.status_code) == ("server", False, 503)
    assert len(openai_server.requests) == 2


async def test_exhausted_quota_is_fatal(make, openai_server):
    body = error_body(429, "You exceeded your current quota", code="insufficient_quota")
    openai_server.script = lambda path, body_: Reply(status=429, raw_body=body)
    err = await propose_error(make())
    assert (err.kind, err.fatal) == ("quota", True)


async def test_bad_request_is_not_fatal(make, openai_server):
    openai_server.script = lambda path, body: Reply(status=400)
    err = await propose_error(make())
    assert (err.kind, err.fatal, err.status_code) == ("bad_request", False, 400)


async def test_slow_reply_times_out(make, openai_server):
    openai_server.script = lambda path, body: Reply(delay=1.0)
    err = await propose_error(make(timeout=0.2))
    assert (err.kind, err.fatal) == ("timeout", False)


async def test_refused_connection(make):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = await propose_error(make(base_url=f"http://127.0.0.1:{port}/v1"))
    assert (err.kind, err.fatal) == ("connection", False)


@pytest.mark.parametrize(
    "reply, said",
    [
        (
            Reply(raw_body="<html>Bad gateway</html>", headers={"Content-Type": "text/html"}),
            "the body is not JSON (Expecting value: line 1 column 1 (char 0)): b'<html>Bad gateway",
        ),
        (
            Reply(raw_body='{"id": "resp_1", "output": [{"ty'),
            "the body is not JSON (Unterminated string starting at: line 1 column 30 (char 29))",
        ),
        (Reply(raw_body="[" * 100_000 + "]" * 100_000), "the body is not JSON (maximum recursion"),
        (Reply(raw_body="[1, 2]"), "the body is not a JSON object: b'[1, 2]'"),
        (Reply(raw_body={"unexpected": True}), "a field is missing or malformed (KeyError("),
    ],
    ids=["html", "cut-off", "nested-too-deep", "json-list", "wrong-shape"],
)
@pytest.mark.parametrize("api_mode", ["responses", "chat"])
async def test_unreadable_200_is_bad_response(make, openai_server, reply, said, api_mode):
    openai_server.script = lambda path, body: reply
    err = await propose_error(make(api_mode))
    assert (err.kind, err.fatal, err.status_code) == ("bad_response", False, 200)
    assert said in str(err)


@pytest.mark.parametrize("api_mode", ["responses", "chat"])
def test_missing_key_is_fatal_before_any_request(openai_server, monkeypatch, api_mode):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="OPENAI_API_KEY is not set") as info:
        make_provider(ApiSettings("gpt-test", api_mode, base_url=openai_server.base_url), api_key=None)
    assert (info.value.kind, info.value.fatal) == ("auth", True)
    assert isinstance(info.value, SynthError)  # the CLI shows it as one line
    assert openai_server.requests == []


async def test_key_falls_back_to_the_environment(make, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    await make(api_key=None).propose(REQ)
    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize(
    "api_mode, settings, message",
    [
        ("chat", {"enable_code_interpreter": True}, "needs the Responses API"),
        ("completions", {}, "unknown API mode"),
    ],
)
def test_settings_that_cannot_run_are_fatal(api_mode, settings, message):
    with pytest.raises(ProviderError, match=message) as info:
        make_provider(ApiSettings("gpt-test", api_mode, **settings), api_key=KEY)
    assert (info.value.kind, info.value.fatal) == ("config", True)


@pytest.mark.slow
async def test_concurrent_calls_share_one_client(make, openai_server):
    openai_server.script = lambda path, body: Reply(delay=0.3)
    provider = make()
    proposals = await asyncio.gather(*(provider.propose(REQ) for _ in range(32)))
    assert openai_server.max_in_flight == 32
    assert len({p.response_id for p in proposals}) == 32

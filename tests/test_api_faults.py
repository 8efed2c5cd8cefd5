"""API faults against the loopback server: which failed calls are retried, how long the
provider waits, what `on_failed_call` is told, and what `synth run` records and does."""

import asyncio
import email.utils
import json
import time
from typing import NamedTuple

import pytest
from click.testing import CliRunner
from helpers import grid
from openai_server import Reply, error_body, in_order

from synth.cli import cli
from synth.config import ApiSettings
from synth.providers import ProposeRequest, ProviderError, make_provider
from synth.providers.retry import RetryPolicy, retry_after
from tracker.db import open_db

KEY = "sk-test-not-a-real-key"
REQ = ProposeRequest(
    prompt="Find f.\n0101 -> 1", train=[("0101", 1)], kind="binary", seed=7, trial=0, attempt=1
)
PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'
HTML = {"Content-Type": "text/html"}
FATAL = {
    "401": (Reply(status=401), "auth", "check OPENAI_API_KEY"),
    "403": (Reply(status=403), "auth", "check OPENAI_API_KEY"),
    "404": (Reply(status=404), "not_found", "unknown model"),
    "quota": (
        Reply(status=429, raw_body=error_body(429, "Out of quota", "insufficient_quota")),
        "quota",
        "Out of quota",
    ),
}


class FailedCall(NamedTuple):
    kind: str
    status_code: int | None
    message: str
    call: int
    wait_s: float | None


@pytest.fixture
def call(openai_server):
    """`propose` (`times` times) through a fresh provider with short waits: (the last
    result or ProviderError raised, the failed calls reported, seconds it all took)."""

    def call(api_mode="responses", times=1, **settings):
        failed = []
        settings = {
            "model": "gpt-test",
            "base_url": openai_server.base_url,
            "retry_base_delay": 0.01,
            "retry_max_delay": 1.0,
            **settings,
        }

        async def propose(provider):
            try:
                return await provider.propose(REQ)
            except ProviderError as e:
                return e

        async def proposals():
            provider = make_provider(
                ApiSettings(mode=api_mode, **settings),
                api_key=KEY,
                on_failed_call=lambda *c: failed.append(FailedCall(*c)),
            )
            try:
                return [await propose(provider) for _ in range(times)][-1]
            finally:
                await provider.aclose()

        start = time.perf_counter()
        outcome = asyncio.run(proposals())
        return outcome, failed, time.perf_counter() - start

    return call


# -- the policy, alone -------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter():
    policy = RetryPolicy(max_retries=10, base_delay=1.0, max_delay=8.0)
    error = ProviderError("503", kind="server")
    for n, full in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (10, 8)]:
        waits = {policy.next_wait(n, error, None) for _ in range(50)}
        assert all(full / 2 <= w <= full for w in waits), (n, waits)
        assert len(waits) > 1, "jittered"
    assert policy.next_wait(11, error, None) is None, "the budget is spent"


@pytest.mark.parametrize(
    "error, retried",
    [
        (ProviderError("", kind="rate_limit", status_code=429), True),
        (ProviderError("", kind="server", status_code=502), True),
        (ProviderError("", kind="timeout"), True),
        (ProviderError("", kind="connection"), True),
        (ProviderError("", kind="bad_response", status_code=200), True),
        (ProviderError("", kind="bad_request", status_code=400), False),
        (ProviderError("", kind="auth", fatal=True, status_code=401), False),
        (ProviderError("", kind="quota", fatal=True, status_code=429), False),
    ],
    ids=lambda v: v.kind if isinstance(v, ProviderError) else None,
)
def test_which_failures_are_retried(error, retried):
    assert (RetryPolicy().next_wait(1, error, None) is not None) == retried


def test_retry_after_is_honoured_within_the_cap():
    policy = RetryPolicy(base_delay=5.0, max_delay=10.0)
    error = ProviderError("", kind="rate_limit", status_code=429)
    assert policy.next_wait(1, error, 0.25) == 0.25
    assert policy.next_wait(1, error, 300.0) == 10.0
    assert policy.next_wait(1, error, -3.0) == 0.0  # a date in the past: go now


def test_negative_settings_cannot_run():
    with pytest.raises(ProviderError, match="must not be negative") as info:
        make_provider(ApiSettings("m", max_retries=-1), api_key=KEY)
    assert (info.value.kind, info.value.fatal) == ("config", True)


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "20", "retry-after": "7"}, 0.02),
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "whenever"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_headers(headers, seconds):
    assert retry_after(headers) == seconds


def test_retry_after_as_an_http_date():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after({"retry-after": later}) <= 30


# -- the provider against the server ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("header, value", [("retry-after-ms", "250"), ("retry-after", "0.25")])
def test_rate_limit_waits_as_long_as_the_server_asks(call, openai_server, header, value):
    openai_server.script = in_order(Reply(status=429, headers={header: value}), Reply())
    proposal, failed, took = call()
    assert proposal.text is not None
    assert [(f.kind, f.status_code, f.call, f.wait_s) for f in failed] == [("rate_limit", 429, 1, 0.25)]
    assert took >= 0.25
    assert len(openai_server.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_until_the_budget_is_spent(call, openai_server, status):
    openai_server.script = lambda path, body: Reply(status=status, raw_body="<html>down</html>", headers=HTML)
    error, failed, _ = call(max_retries=3, retry_base_delay=0.02)
    assert (error.kind, error.fatal, error.status_code) == ("server", False, status)
    # Retries are the provider's alone: the SDK adds none of its own.
    assert len(openai_server.requests) == 4
    assert [(f.kind, f.status_code, f.call) for f in failed] == [("server", status, n) for n in (1, 2, 3, 4)]
    for f, full in zip(failed, (0.02, 0.04, 0.08)):
        assert full / 2 <= f.wait_s <= full
    assert failed[-1].wait_s is None and failed[-1].message == str(error)


def test_connection_reset_is_retried(call, openai_server):
    openai_server.script = in_order(Reply(reset=True), Reply())
    proposal, failed, _ = call()
    assert proposal.text is not None
    [f] = failed
    assert (f.kind, f.status_code, f.call) == ("connection", None, 1)
    assert "Connection reset by peer" in f.message


@pytest.mark.slow
@pytest.mark.parametrize("slow", [Reply(delay=1.0), Reply(trickle=0.1)], ids=["late-reply", "trickling-body"])
def test_a_reply_slower_than_the_timeout_is_retried(call, openai_server, slow):
    # The trickling body arrives in ten pieces 0.1 s apart: no single read waits 0.3 s,
    # the whole takes a second. The timeout is a deadline on the whole reply.
    openai_server.script = in_order(slow, Reply())
    proposal, failed, _ = call(timeout=0.3)
    assert proposal.text is not None
    assert [(f.kind, f.call) for f in failed] == [("timeout", 1)]
    assert "no complete reply within 0.3s" in failed[0].message


@pytest.mark.parametrize(
    "unreadable",
    [
        Reply(raw_body="<html>Bad gateway</html>", headers=HTML),
        Reply(raw_body="{not json"),
        Reply(raw_body={"unexpected": True}),
    ],
    ids=["html", "broken-json", "wrong-shape"],
)
@pytest.mark.parametrize("api_mode", ["responses", "chat"])
def test_a_non_json_body_is_retried(call, openai_server, unreadable, api_mode):
    openai_server.script = in_order(unreadable, Reply())
    proposal, failed, _ = call(api_mode)
    assert proposal.text is not None
    assert [(f.kind, f.status_code, f.call) for f in failed] == [("bad_response", 200, 1)]


@pytest.mark.parametrize("case", FATAL.values(), ids=FATAL.keys())
def test_fatal_failures_are_reported_once_and_never_retried(call, openai_server, case):
    reply, kind, words = case
    openai_server.script = lambda path, body: reply
    error, failed, _ = call(max_retries=3)
    assert (error.kind, error.fatal, error.status_code) == (kind, True, reply.status)
    assert words in str(error)
    assert failed == [FailedCall(kind, reply.status, str(error), 1, None)]
    assert len(openai_server.requests) == 1


def test_after_a_fatal_failure_no_call_is_made(call, openai_server):
    openai_server.script = lambda path, body: Reply(status=401)
    second, failed, _ = call(times=2)
    assert (second.kind, second.fatal, second.status_code) == ("auth", True, 401)
    assert [f.message for f in failed] == [str(second)], "one call, reported once"
    assert len(openai_server.requests) == 1


def test_a_bad_request_is_final_but_not_fatal(call, openai_server):
    openai_server.script = lambda path, body: Reply(status=400)
    error, failed, _ = call(max_retries=3)
    assert (error.kind, error.fatal) == ("bad_request", False)
    assert [(f.kind, f.wait_s) for f in failed] == [("bad_request", None)]
    assert len(openai_server.requests) == 1


def test_without_retries_a_failure_is_final(call, openai_server):
    openai_server.script = lambda path, body: Reply(status=503)
    error, failed, _ = call(max_retries=0)
    assert error.kind == "server" and [f.wait_s for f in failed] == [None]
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize(
    "reply, status, reason",
    [
        (Reply(text="", incomplete="max_output_tokens"), "incomplete", "max_output_tokens"),
        (Reply(text=None, refusal="I can't help with that."), "completed", None),
        (Reply(text=""), "completed", None),
    ],
    ids=["incomplete", "refusal", "empty"],
)
@pytest.mark.parametrize("api_mode", ["responses", "chat"])
def test_answers_without_a_program_are_not_failed_calls(call, openai_server, reply, status, reason, api_mode):
    openai_server.script = lambda path, body: reply
    proposal, failed, _ = call(api_mode)
    assert (proposal.text, proposal.status, proposal.incomplete_reason) == (None, status, reason)
    assert failed == [] and len(openai_server.requests) == 1


def test_recorded_messages_are_one_line_and_never_hold_the_key(call, openai_server):
    body = error_body(401, f"Incorrect API key provided:\n{KEY}\nSee the docs.")
    openai_server.script = lambda path, body_: Reply(status=401, raw_body=body)
    error, failed, _ = call()
    assert KEY not in str(error) and "\n" not in str(error)
    assert "Incorrect API key provided: [OPENAI_API_KEY] See the docs." in str(error)
    assert failed[0].message == str(error)


# -- synth run end to end -----------------------------------------------------------------

GRID = [
    *grid(),
    "--concurrency",
    "1",
    "--db",
    "runs.db",
    "--run-id",
    "faults",
    "--retry-base-delay",
    "0.001",
    "--retry-max-delay",
    "1",
]


@pytest.fixture
def run(workdir, monkeypatch, openai_server):
    """`synth run` of fn_a against the server, in a fresh folder: (result, database)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def run(*args):
        argv = ["run", *GRID, "--api-base-url", openai_server.base_url, *map(str, args)]
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        path = workdir / "runs.db"
        return result, open_db(path, readonly=True) if path.exists() else None

    return run


def failed_calls(db) -> list[dict]:
    rows = db.query(
        "select level, trial_id, message, data from events where kind = 'call_failed' order by id"
    )
    return [{**json.loads(r.pop("data")), **r} for r in rows]


def attempts(db) -> list[tuple]:
    return [
        tuple(r.values())
        for r in db.query(
            "select attempt, status, failure_class, response_status, incomplete_reason, val_acc "
            "from attempt_rows where run_id = 'faults' order by attempt"
        )
    ]


def test_transient_faults_are_retried_and_each_is_an_event(run, openai_server):
    openai_server.script = in_order(
        Reply(status=429, headers={"retry-after-ms": "20"}),
        Reply(status=503),
        Reply(reset=True),
        Reply(delay=2.0),
        Reply(raw_body="<html>", headers=HTML),
        Reply(text=PARITY),
    )
    # A timeout well above a loaded machine's quick reply, well below the slow one.
    result, db = run("--attempts", 3, "--max-retries", 5, "--timeout", 1.0)
    assert result.exit_code == 0, result.output
    assert "no answer" not in result.stderr, "retried faults that end in an answer are no warning"
    assert len(openai_server.requests) == 6
    events = failed_calls(db)
    assert [(e["kind"], e["status_code"], e["call"], e["attempt"], e["level"]) for e in events] == [
        ("rate_limit", 429, 1, 1, "warning"),
        ("server", 503, 2, 1, "warning"),
        ("connection", None, 3, 1, "warning"),
        ("timeout", None, 4, 1, "warning"),
        ("bad_response", 200, 5, 1, "warning"),
    ]
    assert events[0]["wait_s"] == 0.02 and all(e["wait_s"] > 0 for e in events)
    trial = db["trials"].get(events[0]["trial_id"])
    assert (trial["status"], trial["attempts_made"], trial["val_acc"]) == ("done", 1, 1.0)
    assert attempts(db) == [(1, "evaluated", None, "completed", None, 1.0)]
    assert db["runs"].get("faults")["status"] == "completed"


def test_a_call_that_still_fails_consumes_an_attempt(run, openai_server):
    openai_server.script = in_order(Reply(status=503), Reply(status=503), Reply(text=PARITY))
    result, db = run("--attempts", 3, "--max-retries", 1)
    assert result.exit_code == 0, result.output
    assert [
        (e["kind"], e["attempt"], e["call"], e["wait_s"] is None, e["level"]) for e in failed_calls(db)
    ] == [("server", 1, 1, False, "warning"), ("server", 1, 2, True, "error")]
    assert attempts(db) == [
        (1, "call_failed", "call_server", None, None, None),
        (2, "evaluated", None, "completed", None, 1.0),
    ]
    assert "Warning: 1 of 2 attempts got no answer from the model (1 call_server)" in result.stderr
    trial = next(db["trials"].rows)
    assert (trial["attempts_made"], trial["selected_attempt"]) == (2, 2)


def test_the_run_finishes_when_every_call_fails(run, openai_server):
    openai_server.script = lambda path, body: Reply(status=500)
    result, db = run("--attempts", 2, "--max-retries", 2)
    assert result.exit_code == 0, result.output
    assert len(openai_server.requests) == 2 * 3
    assert len(failed_calls(db)) == 6
    assert [a[2] for a in attempts(db)] == ["call_server", "call_server"]
    assert db["runs"].get("faults")["status"] == "completed"
    assert (next(db["trials"].rows)["status"], next(db["trials"].rows)["val_acc"]) == ("done", 0.0)
    assert (
        "Warning: 2 of 2 attempts got no answer from the model (2 call_server); they score as wrong."
    ) in result.stderr


def test_answers_without_a_program_consume_attempts_without_retries(run, openai_server):
    openai_server.script = in_order(
        Reply(text="", incomplete="max_output_tokens"),
        Reply(text=None, refusal="No."),
        Reply(text=""),
    )
    result, db = run("--attempts", 3)
    assert result.exit_code == 0, result.output
    assert len(openai_server.requests) == 3 and failed_calls(db) == []
    assert attempts(db) == [
        (1, "extract_failed", "no_output", "incomplete", "max_output_tokens", None),
        (2, "extract_failed", "no_output", "completed", None, None),
        (3, "extract_failed", "no_output", "completed", None, None),
    ]


@pytest.mark.parametrize("case", FATAL.values(), ids=FATAL.keys())
def test_a_fatal_failure_stops_the_run_at_once(run, openai_server, case):
    reply, kind, words = case
    openai_server.script = lambda path, body: reply
    result, db = run("--num-trials", 4, "--attempts", 3, "--max-retries", 3)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [message] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert words in message
    assert len(openai_server.requests) == 1, "no call after the fatal one"
    run_row = db["runs"].get("faults")
    assert run_row["status"] == "failed" and words in run_row["error"]
    [event] = failed_calls(db)
    assert (event["kind"], event["status_code"], event["wait_s"], event["level"]) == (
        kind,
        reply.status,
        None,
        "error",
    )
    assert db.execute("select count(*) from events where kind = 'run_failed'").fetchone()[0] == 1
    assert db.execute("select count(*) from attempts").fetchone()[0] == 0


def test_a_missing_key_stops_before_anything_is_written(run, openai_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    result, db = run("--attempts", 1)
    assert result.exit_code == 2 and "OPENAI_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.output
    assert db is None and openai_server.requests == []

"""A real HTTP server on 127.0.0.1 that speaks the OpenAI wire formats, scripted per test.

The openai SDK (3.x, over httpx2) is exercised end to end: retries, timeouts, status
errors and body parsing all happen for real. A test sets `server.script`, a callable
`(path, body) -> Reply`; the server records every request in `server.requests`.
Loaded as a pytest plugin (tests/conftest.py), it provides the `openai_server` fixture;
benchmarks can use `OpenAIServer` directly as a context manager.

It also speaks the Batch API (`BatchAPI`): files uploaded with purpose=batch, batches
created, polled, listed and cancelled; each batch ends as `server.batches.plan` says
(after how many polls, completed, expired or failed) and its lines are answered by the
same `script`, so a batch run and a direct run of one script get the same answers.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

DEFAULT_TEXT = '{"code": "def f(x):\\n    return 1"}'


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 120
    cached_tokens: int = 0
    output_tokens: int = 40
    reasoning_tokens: int = 16


@dataclass
class Reply:
    """What the server answers to one request.

    `raw_body` (bytes, str, or a dict sent as JSON) replaces the generated body; an
    error status without one gets an OpenAI-style error body. `incomplete` is a
    Responses incomplete reason ("max_output_tokens", "content_filter"). Faults:
    `delay` seconds before the reply starts; `trickle` seconds between each of the
    body's ten pieces (every read is quick, the whole is slow); `reset` drops the
    connection with a TCP reset instead of answering.
    """

    text: str | None = DEFAULT_TEXT
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | str | dict | None = None
    usage: Usage = field(default_factory=Usage)
    incomplete: str | None = None
    refusal: str | None = None
    trickle: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class Recorded:
    path: str
    body: dict | None
    # Kept out of repr so an assertion failure never prints the Authorization header.
    headers: dict[str, str] = field(repr=False)


Script = Callable[[str, dict], Reply]


def _id(prefix: str, sep: str = "_") -> str:
    return f"{prefix}{sep}{uuid.uuid4().hex}"


def responses_body(request: dict, reply: Reply) -> dict:
    """A `response` object as POST /v1/responses returns it, echoing the request's settings."""
    u = reply.usage
    content = []
    if reply.text is not None:
        content.append({"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []})
    if reply.refusal is not None:
        content.append({"type": "refusal", "refusal": reply.refusal})
    status = "incomplete" if reply.incomplete else "completed"
    return {
        "id": _id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": reply.incomplete} if reply.incomplete else None,
        "instructions": None,
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model", "gpt-test"),
        "output": [
            {"id": _id("rs"), "type": "reasoning", "summary": []},
            {
                "id": _id("msg"),
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {
            "format": {"type": "text"},
            "verbosity": (request.get("text") or {}).get("verbosity", "medium"),
        },
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens,
        },
        "user": None,
        "metadata": {},
    }


def code_interpreter_call(code: str, logs: list[str]) -> dict:
    """A `code_interpreter_call` output item, to insert into a responses_body's output."""
    return {
        "id": _id("ci"),
        "type": "code_interpreter_call",
        "status": "completed",
        "code": code,
        "container_id": _id("cntr"),
        "outputs": [{"type": "logs", "logs": text} for text in logs],
    }


def chat_body(request: dict, reply: Reply) -> dict:
    """A `chat.completion` object as POST /v1/chat/completions returns it."""
    u = reply.usage
    finish = {"max_output_tokens": "length", "content_filter": "content_filter"}.get(reply.incomplete, "stop")
    return {
        "id": _id("chatcmpl", "-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "gpt-test"),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": reply.refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": u.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }


# The error type and code the API sends with each status.
_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> dict:
    kind, default_code = _ERRORS.get(status, ("server_error", None))
    return {
        "error": {
            "message": message or f"scripted error {status}",
            "type": kind,
            "param": None,
            "code": code or default_code,
        }
    }


def default_script(path: str, body: dict) -> Reply:
    return Reply()


def in_order(*replies: Reply) -> Script:
    """A script answering with `replies` in turn, repeating the last one (thread-safe)."""
    lock = threading.Lock()
    queue = list(replies)

    def script(path: str, body: dict) -> Reply:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return script


_BUILDERS = {"/v1/responses": responses_body, "/v1/chat/completions": chat_body}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    timeout = 60  # an idle keep-alive connection frees its thread after this
    # Headers and body go out in two writes; with Nagle's algorithm on, the second
    # waits for the client's delayed ACK (~40 ms a call on Linux).
    disable_nagle_algorithm = True
    server: OpenAIServer

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._serve(body, raw)

    def do_GET(self):
        self._serve(None, b"")

    def _serve(self, body: dict | None, raw: bytes) -> None:
        sent = {name.lower(): value for name, value in self.headers.items()}
        self.server.record(Recorded(self.path, body, sent))
        try:
            with self.server.answering():
                batch = self.server.batches.answer(self.command, self.path, body, raw, sent)
                if batch is not None:
                    self._send(*batch)
                else:
                    self._answer(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True

    def _send(self, status: int, payload: bytes | dict) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, body: dict | None) -> None:
        build = _BUILDERS.get(self.path)
        if self.command != "POST" or build is None:
            reply = Reply(status=404, raw_body=error_body(404, f"no route for {self.path}"))
        elif body is None:
            reply = Reply(status=400, raw_body=error_body(400, "the request body is not JSON"))
        else:
            reply = self.server.script(self.path, body)
        time.sleep(reply.delay)
        if reply.reset:
            self._reset()
            return
        payload = reply.raw_body
        if payload is None:
            payload = build(body, reply) if reply.status < 400 else error_body(reply.status)
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        headers = {"Content-Type": "application/json", "x-request-id": _id("req"), **reply.headers}
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not reply.trickle:
            self.wfile.write(payload)
            return
        step = max(1, -(-len(payload) // 10))  # ten pieces
        for start in range(0, len(payload), step):
            time.sleep(reply.trickle)
            self.wfile.write(payload[start : start + step])

    def _reset(self) -> None:
        """Close at once with an RST (SO_LINGER 0), as a crashed peer or proxy does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def log_message(self, format, *args):
        """Silent: the server must never write requests (or their keys) anywhere."""


class OpenAIServer(ThreadingHTTPServer):
    """The loopback server; `base_url` is what an SDK client takes."""

    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of connections

    def __init__(self, script: Script = default_script):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.batches = BatchAPI(self)
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being answered at once (concurrency tests)
        self._lock = threading.Lock()
        # A short poll lets shutdown() return quickly (the default waits up to 0.5 s).
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    @contextmanager
    def answering(self):
        """Counts the requests being answered, to measure how many arrive at once."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


def reply_line(server: OpenAIServer, line: dict) -> tuple[bool, dict]:
    """One input line of a batch answered by the server's script, as the Batch API writes
    it: (whether it went to the output file rather than the error file, the line)."""
    url, body = line["url"], line["body"]
    reply = server.script(url, body)
    ok = reply.status == 200
    payload = _BUILDERS[url](body, reply) if ok else error_body(reply.status)
    response = {"status_code": reply.status, "request_id": _id("req"), "body": payload}
    return ok, {"id": _id("batch_req"), "custom_id": line["custom_id"], "response": response, "error": None}


@dataclass(frozen=True)
class BatchPlan:
    """How one batch ends: after ``polls`` retrievals, as ``outcome`` (completed, expired,
    failed); an expired one (or one cancelled meanwhile) answers its first ``answered``
    lines only. ``hold``: its
    POST /v1/batches, once the batch is created, waits for BatchAPI.release (so a client
    killed meanwhile never learns its id)."""

    polls: int = 1
    outcome: str = "completed"
    answered: int = 0
    hold: bool = False


class BatchAPI:
    """The files and batches endpoints. ``plan(n)`` says how the n-th batch created (from
    1) goes; ``enabled`` False answers 404, as a server without the Batch API does."""

    def __init__(self, server: OpenAIServer):
        self.server = server
        self.files: dict[str, bytes] = {}
        self.created: list[dict] = []  # every batch, oldest first
        self.plan: Callable[[int], BatchPlan] = lambda n: BatchPlan()
        self.release = threading.Event()
        self.enabled = True
        self._polls: dict[str, int] = {}
        self._lock = threading.Lock()

    def answer(
        self, method: str, path: str, body, raw: bytes, headers: dict
    ) -> tuple[int, bytes | dict] | None:
        """The reply to a Batch API request, or None for a request of another endpoint."""
        url = urlsplit(path)
        if not url.path.startswith(("/v1/files", "/v1/batches")):
            return None
        if not self.enabled:
            return 404, error_body(404, f"no route for {url.path}")
        route = (method, re.sub(r"/(file|batch)_[0-9a-f]+", r"/{\1}", url.path))
        ids = re.findall(r"(?:file|batch)_[0-9a-f]+", url.path)
        if route == ("POST", "/v1/files"):
            return 200, self._upload(raw, headers["content-type"])
        if route == ("GET", "/v1/files/{file}/content"):
            return 200, self.files[ids[0]]
        if route == ("POST", "/v1/batches"):
            return 200, self._create(body)
        if route == ("GET", "/v1/batches/{batch}"):
            return 200, self._retrieve(ids[0])
        if route == ("GET", "/v1/batches"):
            return 200, self._list(parse_qs(url.query))
        if route == ("POST", "/v1/batches/{batch}/cancel"):
            return 200, self._cancel(ids[0])
        return 404, error_body(404, f"no route for {method} {url.path}")

    def _upload(self, raw: bytes, content_type: str) -> dict:
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        assert parts["purpose"].get_content() == "batch"
        data = parts["file"].get_payload(decode=True)
        file_id = _id("file")
        with self._lock:
            self.files[file_id] = data
        return _file(file_id, len(data), "input.jsonl", "batch")

    def _create(self, body: dict) -> dict:
        with self._lock:
            batch = {
                "id": _id("batch"),
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "in_progress_at": None,
                "expires_at": int(time.time()) + 86400,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            self.created.append(batch)
            self._polls[batch["id"]] = 0
            answered, number = dict(batch), len(self.created)
        if self.plan(number).hold:
            self.release.wait()
        return answered

    def _retrieve(self, batch_id: str) -> dict:
        with self._lock:
            batch = next(b for b in self.created if b["id"] == batch_id)
            if batch["status"] in ("validating", "in_progress", "cancelling"):
                self._polls[batch_id] += 1
                plan = self.plan(self.created.index(batch) + 1)
                if batch["status"] == "cancelling":
                    self._end(batch, BatchPlan(outcome="cancelled", answered=plan.answered))
                elif self._polls[batch_id] >= plan.polls:
                    self._end(batch, plan)
                else:
                    batch["status"] = "in_progress"
            return dict(batch)

    def _end(self, batch: dict, plan: BatchPlan) -> None:
        """The batch reaches ``plan.outcome``: its answered lines in the output or error
        file, an expired or cancelled one's others in the error file as such."""
        batch["status"] = plan.outcome
        batch[f"{plan.outcome}_at"] = int(time.time())
        if plan.outcome == "failed":
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "scripted"}]}
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()]
        output, errors = [], []
        for i, line in enumerate(lines):
            if plan.outcome != "completed" and i >= plan.answered:
                code = f"batch_{plan.outcome}"
                errors.append(
                    {
                        "id": _id("batch_req"),
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": code, "message": f"this request was not run: {code}"},
                    }
                )
                continue
            ok, answered = reply_line(self.server, line)
            (output if ok else errors).append(answered)
        for kind, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = _id("file")
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[kind] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}

    def _list(self, query: dict) -> dict:
        with self._lock:
            newest_first = [dict(b) for b in reversed(self.created)]
        after = query.get("after", [None])[0]
        if after is not None:
            newest_first = newest_first[[b["id"] for b in newest_first].index(after) + 1 :]
        limit = int(query.get("limit", ["20"])[0])
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest_first) > limit,
        }

    def _cancel(self, batch_id: str) -> dict:
        with self._lock:
            batch = next(b for b in self.created if b["id"] == batch_id)
            batch["status"] = "cancelling"
            return dict(batch)


def _file(file_id: str, size: int, name: str, purpose: str) -> dict:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": name,
        "purpose": purpose,
        "status": "processed",
    }


@pytest.fixture
def openai_server():
    """A started OpenAIServer answering DEFAULT_TEXT until a test sets `.script`."""
    with OpenAIServer() as server:
        yield server

"""The OpenAI Batch API's calls, for a `--batch` run (synth.engine.waves drives them).

A wave's requests become a JSONL file (`{"custom_id", "method", "url", "body"}` a line,
each body exactly what a direct call sends), uploaded with purpose=batch; a batch is
created on it with metadata naming the run, the wave and a key of its own, so that a
batch whose creation was never recorded is found again by that key. A finished batch's
output and error lines are read by the direct provider's own reader: a 200 line's
`response.body` becomes the same Proposal a direct reply would, any other line the same
ProviderError its status would have raised.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import openai

from synth.errors import SynthError
from synth.providers.base import Proposal, ProviderError
from synth.providers.openai_api import _OpenAIProvider, _retry_after

ENDPOINTS = {"openai-responses": "/v1/responses", "openai-chat": "/v1/chat/completions"}
# What one batch may hold (the API's limits): a wave larger is split into several.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
# A batch in one of these states changes no more.
ENDED = ("completed", "failed", "expired", "cancelled")
# Error-file codes of requests a batch ended before running: sent again in a new batch.
NOT_RUN = ("batch_expired", "batch_cancelled")


class BatchClient:
    """The Batch API over a direct provider's client, key, retry policy and reader."""

    def __init__(self, provider: _OpenAIProvider):
        self.provider = provider
        self.client = provider.client
        self.endpoint = ENDPOINTS[provider.name]

    def line(self, custom_id: str, body: dict) -> bytes:
        """One request of an input file."""
        return (
            json.dumps(
                {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}
            ).encode()
            + b"\n"
        )

    async def upload(self, data: bytes) -> str:
        """The id of a new input file holding ``data``."""
        file = await self._retried(
            lambda: self.client.files.create(file=("wave.jsonl", data), purpose="batch")
        )
        return file.id

    async def create(self, input_file_id: str, metadata: dict[str, str]) -> dict:
        return await self._batch(
            lambda: self.client.batches.create(
                input_file_id=input_file_id,
                endpoint=self.endpoint,
                completion_window="24h",
                metadata=metadata,
            )
        )

    async def retrieve(self, batch_id: str) -> dict:
        return await self._batch(lambda: self.client.batches.retrieve(batch_id))

    async def find(self, key: str, since: float) -> dict | None:
        """The batch created with metadata ``key``, if any: the list is read newest first,
        page by page, down to the batches created before ``since`` (a Unix time)."""

        async def search():
            async for batch in self.client.batches.list(limit=100):
                if (batch.metadata or {}).get("key") == key:
                    return batch.to_dict()
                if batch.created_at < since:
                    return None
            return None

        return await self._retried(search)

    async def lines(self, batch: dict) -> dict[str, dict]:
        """A finished batch's output and error lines, by custom id."""
        found = {}
        for name in ("output_file_id", "error_file_id"):
            if batch.get(name):
                reply = await self._retried(lambda file_id=batch[name]: self.client.files.content(file_id))
                for text in self.provider._masked(reply.content).splitlines():
                    if text.strip():
                        line = json.loads(text)
                        found[line["custom_id"]] = line
        return found

    def outcome(self, line: dict, body: dict, duration_ms: float) -> Proposal:
        """The proposal an answered line holds; a failed line raises its ProviderError."""
        response = line.get("response")
        if response is None:
            error = line.get("error") or {}
            raise ProviderError(
                self.provider._clean(
                    f"{self.provider.name}: batch line failed: {error.get('code')}: {error.get('message')}"
                ),
                kind="server",
            )
        if response.get("status_code") != 200:
            raise self.provider.status_error(response.get("status_code"), response.get("body"))
        return self.provider.proposal(response.get("body"), body, duration_ms)

    async def _batch(self, call) -> dict:
        return (await self._retried(call)).to_dict()

    async def _retried(self, call):
        """A Batch API call, retried as a model call is (docs/faults.md); its last failure
        stops the run, which a resume continues from what was recorded."""
        policy = self.provider.retry
        for attempt in itertools.count(1):
            try:
                return await call()
            except openai.OpenAIError as err:
                error = self.provider._error(err)
            wait = policy.next_wait(attempt, error, _retry_after(error))
            if wait is None:
                raise ProviderError(f"Batch API: {error}", kind=error.kind, fatal=True)
            await asyncio.sleep(wait)


def failed_batch_line(custom_id: str, batch: dict) -> dict:
    """The line of each request of a batch that failed as a whole (its input refused):
    a 400 with the batch's errors, as that request's own refusal would read."""
    errors = (batch.get("errors") or {}).get("data") or [{}]
    return {
        "custom_id": custom_id,
        "response": {"status_code": 400, "body": {"error": {**errors[0], "type": "invalid_request_error"}}},
    }


def check_batch_api(provider: _OpenAIProvider) -> None:
    """Refuse a server without the Batch API (404 on /v1/batches) before anything is
    recorded: one listing call, nothing spent."""
    client = openai.OpenAI(api_key=provider.key(), base_url=provider.client.base_url, max_retries=0)
    try:
        client.batches.list(limit=1)
    except openai.NotFoundError:
        raise SynthError(
            f"--batch: the server at {provider.client.base_url} has no Batch API "
            "(404 on /v1/batches); run without --batch"
        ) from None
    except openai.OpenAIError as err:
        raise SynthError(
            f"--batch: cannot reach the Batch API at {provider.client.base_url}: {err}"
        ) from None
    finally:
        client.close()


def waited_ms(batch: dict) -> float:
    """How long a batch's requests waited for their answers: from its creation to its end."""
    ended = next((batch[f"{s}_at"] for s in ENDED if batch.get(f"{s}_at")), None) or time.time()
    return max(0.0, (ended - batch["created_at"]) * 1000)

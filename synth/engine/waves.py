"""`--batch`: a run's attempts go out through the Batch API in waves, at half price.

To the runner this is one more provider: each trial asks for its attempt and waits, and
is answered with the very Proposal (or ProviderError) a direct call gives, so it is
recorded, evaluated and selected as any attempt is. Underneath, the requests wait until
every open trial has asked (wave k: attempt k of every trial still unsolved, plus the
lines of wave k-1 being retried or sent again), then go out as one batch (several when
larger than one may be), each recorded in the `batches` table the moment its input
file exists and again when the batch does, and polled until it ends.

A resume matches each request to the last recorded batch holding it and polls that
batch instead of submitting it again; a batch whose creation was never recorded is found
by the key in its metadata, or created then on the file already uploaded.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlite_utils

from synth.config import RunConfig
from synth.progress import Progress
from synth.providers.base import Proposal, ProposeRequest
from synth.providers.batch_api import (
    ENDED,
    MAX_BYTES,
    MAX_REQUESTS,
    NOT_RUN,
    BatchClient,
    failed_batch_line,
    waited_ms,
)
from synth.providers.openai_api import _OpenAIProvider
from tracker import batches as store


@dataclass(eq=False)
class _Request:
    custom_id: str
    line: bytes  # its line of an input file
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Waves:
    """The Provider a `--batch` run's runner calls: see the module's docstring."""

    def __init__(
        self, db: sqlite_utils.Database, config: RunConfig, direct: _OpenAIProvider, progress: Progress
    ):
        self.db = db
        self.run_id = config.run_id
        self.direct = direct
        self.name = direct.name
        self.api = BatchClient(direct)
        self.progress = progress
        self.poll = (config.batch_poll_interval, config.batch_poll_max)
        recorded = store.run_batches(db, config.run_id)
        # Each request's last recorded batch (a resume polls it rather than send it again).
        self.recorded = {cid: row for row in recorded for cid in row["custom_ids"]}
        self.waves = itertools.count(max((r["wave"] for r in recorded), default=0) + 1)
        self.pending: list[_Request] = []
        self.open = 0  # trials that may still ask
        self.tasks: set[asyncio.Task] = set()

    @property
    def on_failed_call(self):
        return self.direct.on_failed_call

    @on_failed_call.setter
    def on_failed_call(self, report) -> None:
        self.direct.on_failed_call = report

    def expect(self, trials: int) -> None:
        """``trials`` more trials will ask for attempts: no wave leaves before each has."""
        self.open += trials

    def trial_ended(self) -> None:
        self.open -= 1
        self._send_when_all_asked()

    async def propose(self, req: ProposeRequest) -> Proposal:
        body = self.direct.body(req.prompt)
        custom_id = f"trial-{req.trial_id}-attempt-{req.attempt}"
        line = self.api.line(custom_id, body)

        async def through_a_wave() -> Proposal:
            request = _Request(custom_id, line)
            self.pending.append(request)
            self._send_when_all_asked()
            answered, duration_ms = await request.answer
            return self.api.outcome(answered, body, duration_ms)

        return await self.direct.retrying(through_a_wave, sleep=False)

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.direct.aclose()

    def _send_when_all_asked(self) -> None:
        if self.pending and len(self.pending) >= self.open:
            wave, self.pending = self.pending, []
            task = asyncio.get_running_loop().create_task(self._send(wave))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, wave: list[_Request]) -> None:
        """One wave: the recorded batches its requests are in (after a resume), and new
        batches for the others; a failure reaches every request still waiting."""
        try:
            resumed: dict[int, tuple[dict, list[_Request]]] = {}
            new = []
            for r in wave:
                row = self.recorded.pop(r.custom_id, None)
                if row is None:
                    new.append(r)
                else:
                    resumed.setdefault(row["id"], (row, []))[1].append(r)
            batches = [(row, requests, True) for row, requests in resumed.values()]
            if new:
                number = next(self.waves)
                for part in split(new):
                    batches.append((await self._submitted(number, part), part, False))
            await asyncio.gather(*(self._batch(*batch) for batch in batches))
        except Exception as e:
            for r in wave:
                if not r.answer.done():
                    r.answer.set_exception(e)
        except BaseException:  # cancelled: the run stops
            for r in wave:
                r.answer.cancel()
            raise

    async def _submitted(self, wave: int, requests: list[_Request]) -> dict:
        """Upload a batch's input file and record it (before the batch is created)."""
        key = uuid.uuid4().hex
        file_id = await self.api.upload(b"".join(r.line for r in requests))
        row_id = store.record_batch(
            self.db,
            self.run_id,
            wave=wave,
            key=key,
            endpoint=self.api.endpoint,
            input_file_id=file_id,
            custom_ids=[r.custom_id for r in requests],
        )
        return {"id": row_id, "wave": wave, "key": key, "input_file_id": file_id, "batch_id": None}

    async def _batch(self, row: dict, requests: list[_Request], resumed: bool) -> None:
        """Create (or find) the batch of ``row``, poll it to its end, answer its requests;
        those it never ran wait for the next wave."""
        batch = await self._created(row, resumed)
        wait, most = self.poll
        while batch["status"] not in ENDED:
            await asyncio.sleep(wait)
            wait = min(wait * 2, most)
            polled = await self.api.retrieve(batch["id"])
            if _state(polled) != _state(batch):
                self._recorded(row, polled)
            batch = polled
        lines = await self.api.lines(batch)
        duration_ms = waited_ms(batch)
        for r in requests:
            line = lines.get(r.custom_id)
            if batch["status"] == "failed":
                line = failed_batch_line(r.custom_id, batch)
            if r.answer.done():  # the wave failed meanwhile (another of its batches)
                continue
            if line is None or (line.get("error") or {}).get("code") in NOT_RUN:
                self.pending.append(r)  # expired or cancelled before it ran: sent again
            else:
                r.answer.set_result((line, duration_ms))
        self._send_when_all_asked()

    async def _created(self, row: dict, resumed: bool) -> dict:
        """The batch of a recorded input file: polled when its id was recorded; else found
        by its key (created, but killed before it was recorded), else created now."""
        if row["batch_id"] is not None:
            batch = await self.api.retrieve(row["batch_id"])
        else:
            metadata = {"run_id": self.run_id, "wave": str(row["wave"]), "key": row["key"]}
            # A server's clock may run behind ours: an hour of slack.
            since = datetime.fromisoformat(row["created_at"]).timestamp() - 3600 if resumed else None
            found = await self.api.find(row["key"], since) if resumed else None
            batch = found or await self.api.create(row["input_file_id"], metadata)
        self._recorded(row, batch)
        return batch

    def _recorded(self, row: dict, batch: dict) -> None:
        store.update_batch(self.db, row["id"], batch)
        self.progress.wave(row["wave"], batch)


def _state(batch: dict) -> tuple:
    return batch["status"], batch.get("request_counts")


def split(requests: list[_Request]) -> list[list[_Request]]:
    """A wave's requests as batches the API takes: at most MAX_REQUESTS lines and
    MAX_BYTES of input file each."""
    parts: list[list[_Request]] = [[]]
    size = 0
    for r in requests:
        if parts[-1] and (len(parts[-1]) >= MAX_REQUESTS or size + len(r.line) > MAX_BYTES):
            parts.append([])
            size = 0
        parts[-1].append(r)
        size += len(r.line)
    return parts

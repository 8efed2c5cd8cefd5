"""The propose-and-verify loop: every trial of every grid point, concurrently.

At most ``concurrency`` model calls are in flight; evaluations run in sandboxed child
processes, at most one per core, awaited without blocking the event loop. Each record
is written when it happens (the runner is the database's only writer), so a killed run
loses at most its calls in flight and resumes from what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from synth.config import RunConfig
from synth.datasets.cache import StoredDataset
from synth.engine.budget import Budget
from synth.engine.failfast import FailFast
from synth.engine.waves import Waves
from synth.errors import RunFailed, SetupFailed
from synth.extract import extract_program
from synth.progress import Progress
from synth.prompts import prompt_hash
from synth.providers.base import Proposal, ProposeRequest, Provider, ProviderError
from synth.sandbox import evaluate_async
from synth.selection import select
from tracker import runs as store

# Error messages kept per evaluation, and their length.
MAX_ERRORS_KEPT = 5

# The (trial id, attempt) whose model call is in flight in this task, for the events
# record_failed_call writes (each trial runs in its own task).
_calling: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("calling")


@contextlib.contextmanager
def setup_frozen():
    """The objects made before the loop (imports, datasets, jobs: most of the heap) kept
    out of the garbage collector's full passes while it runs: each pass would walk them
    all, ~0.1 s in which every reply waits. Unfrozen after, so what they leave behind is
    collected as usual."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True)
class GridJob:
    """One grid point, ready to run: its dataset, splits and rendered prompt."""

    stored: StoredDataset
    splits: dict[str, list[tuple[str, int]]]
    prompt: str

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.prompt)

    @functools.cached_property
    def eval_inputs(self) -> list[str]:
        """Validation then test inputs: one sandboxed evaluation covers both."""
        return [x for x, _ in self.splits["val"]] + [x for x, _ in self.splits["test"]]

    @functools.cached_property
    def labels(self) -> dict[str, np.ndarray]:
        return {s: np.array([y for _, y in rows], dtype=np.uint8) for s, rows in self.splits.items()}


class Runner:
    def __init__(
        self,
        db: sqlite_utils.Database,
        config: RunConfig,
        provider: Provider | None,
        progress: Progress,
        budget: Budget,
        *,
        call_slots: asyncio.Semaphore | None = None,
        eval_slots: asyncio.Semaphore | None = None,
    ):
        """``call_slots`` and ``eval_slots``: shared with other runs in this event loop (a
        study's cells share their endpoint's limit and one sandbox's cores)."""
        self.db = db
        self.config = config
        # A --batch run's calls wait for their wave, never for a call slot.
        self.waves = Waves(db, config, provider, progress) if config.batch and provider is not None else None
        self.provider = self.waves or provider  # None for a dry run
        self.budget = budget
        if provider is not None:
            self.provider.on_failed_call = self.record_failed_call
        self.progress = progress
        self.call_slots = (
            contextlib.nullcontext() if self.waves else call_slots or asyncio.Semaphore(config.concurrency)
        )
        self.eval_slots = eval_slots or asyncio.Semaphore(os.cpu_count() or 1)
        self.fail_fast = FailFast(config.fail_fast_after)
        self.halted = False  # once set, no call starts: calls in flight finish

    async def run(self, jobs: dict[tuple[str, int], GridJob], trials: Iterable[dict]) -> None:
        """Run the unfinished ``trials`` (synth.engine.trials.unfinished), in order, a few
        at a time: enough to keep every call and evaluation slot busy, never a task per
        trial of a large grid. A --batch run's wave leaves once every open trial has asked,
        so there every open trial runs at once. A fatal provider error cancels the rest."""
        workers = self.config.concurrency + (os.cpu_count() or 1)
        if self.waves is not None:
            trials = list(trials)
            self.waves.expect(len(trials))
            workers = len(trials)
        todo = iter(trials)

        async def worker() -> None:
            for t in todo:
                try:
                    if "id" not in t:  # not started yet: recorded now, unless no call may start
                        if self.halted and not self.config.dry_run:
                            continue
                        t = store.start_trial(self.db, self.config.run_id, t)
                    await self.run_trial(jobs[(t["fn"], t["length"])], t)
                finally:
                    if self.waves is not None:  # it asks for no more attempts
                        self.waves.trial_ended()

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except* RunFailed as eg:
            raise eg.exceptions[0] from None
        if (reason := self.fail_fast.verdict()) is not None:  # a run of fewer calls than the rule's
            self._stop_fast(reason)

    async def run_trial(self, job: GridJob, trial: dict) -> None:
        results = [await self._recorded_result(job, a) for a in store.attempts_of(self.db, trial["id"])]
        if self.config.dry_run:
            if not results:
                self._record(job, trial, 1, status="dry_run", proposal=None)
                results.append((1, None, None))
        else:
            while len(results) < self.config.attempts and not _solved(results):
                n = len(results) + 1
                try:
                    results.append((n, *await self.attempt(job, trial, n)))
                except _NoMoreCalls:  # the trial stays open: a resume goes on with it
                    return
        result = select(results)
        if self.config.dry_run:  # nothing was scored: no accuracy, rather than a 0 to average
            result.update(val_acc=None, test_acc=None, oracle_test_acc=None)
        store.finish_trial(self.db, trial["id"], {**result, "attempts_made": len(results)})
        self.progress.trial_done(job, trial["trial"], None if self.config.dry_run else result)

    async def _recorded_result(self, job: GridJob, a: dict) -> tuple[int, float | None, float | None]:
        """A stored attempt's scores; one killed before its evaluation is evaluated now."""
        if a["status"] == "pending_eval":
            return (a["attempt"], *await self._evaluate(job, a["id"], a["code"], a["func_name"]))
        return a["attempt"], a["val_acc"], a["test_acc"]

    async def attempt(self, job: GridJob, trial: dict, n: int) -> tuple[float | None, float | None]:
        request = ProposeRequest(
            prompt=job.prompt,
            train=job.splits["train"],
            kind=job.stored.point.task.kind,
            seed=self.config.seed,
            trial=trial["trial"],
            attempt=n,
            val=job.splits["val"],
            trial_id=trial["id"],
        )
        _calling.set((trial["id"], n))
        try:
            async with self.call_slots:
                reserved = None if self.halted else self.budget.reserve(job.prompt_hash, job.prompt)
                if reserved is None:  # stopped, or the cap cannot afford this call
                    self.halted = True
                    raise _NoMoreCalls
                self.progress.call_started()
                try:
                    proposal = await self.provider.propose(request)
                except ProviderError:
                    self.budget.settle(reserved, 0.0, job.prompt_hash, None)
                    raise
                finally:
                    self.progress.call_finished()
        except ProviderError as e:  # each of its calls is an event already (record_failed_call)
            if e.fatal:
                raise RunFailed(str(e)) from None
            attempt_id = self._record(
                job, trial, n, status="call_failed", proposal=None, failure=f"call_{e.kind}", error=str(e)
            )
            if (reason := self.fail_fast.failed(e, attempt_id)) is not None:
                self._stop_fast(reason)
            return None, None
        self.fail_fast.answered()
        costs = self.budget.price.costs(proposal.input_tokens, proposal.cached_tokens, proposal.output_tokens)
        extraction = extract_program(proposal.text)
        attempt_id = self._record(
            job,
            trial,
            n,
            status="pending_eval" if extraction.ok else "extract_failed",
            proposal=proposal,
            extraction=extraction,
            failure=extraction.failure,
            error=extraction.error,
            costs=costs,
        )
        self.budget.settle(reserved, costs["cost_usd"], job.prompt_hash, proposal.input_tokens)
        self.progress.answered(proposal.input_tokens + proposal.output_tokens, self.budget.spent)
        if not extraction.ok:
            return None, None
        return await self._evaluate(job, attempt_id, extraction.code, extraction.func_name)

    def _stop_fast(self, reason: str) -> None:
        """The first calls all failed alike: their attempts are taken back and the run stops."""
        self.halted = True
        store.discard_attempts(self.db, self.config.run_id, self.fail_fast.attempt_ids, reason)
        raise SetupFailed(reason)

    def record_failed_call(
        self, kind: str, status_code: int | None, message: str, call: int, wait_s: float | None
    ) -> None:
        """The provider's on_failed_call: one event per failed HTTP call, retried or final."""
        trial_id, n = _calling.get()
        store.record_event(
            self.db,
            self.config.run_id,
            "call_failed",
            message,
            level="warning" if wait_s is not None else "error",
            trial_id=trial_id,
            data={"kind": kind, "status_code": status_code, "attempt": n, "call": call, "wait_s": wait_s},
        )

    def _record(
        self,
        job,
        trial,
        n,
        *,
        status,
        proposal: Proposal | None,
        extraction=None,
        failure=None,
        error=None,
        costs: dict | None = None,
    ) -> int:
        program = None
        if extraction is not None and extraction.code is not None:
            program = (prompt_hash(extraction.code), extraction.code)
        attempt = {
            "attempt": n,
            "status": status,
            "failure_class": failure,
            "error": error,
            "func_name": extraction.func_name if extraction else None,
            "extraction": extraction.source if extraction else None,
        }
        return store.record_attempt(
            self.db,
            trial["id"],
            attempt,
            prompt=(job.prompt_hash, job.prompt),
            response={**_response_record(self.provider, self.config, proposal), **costs}
            if proposal
            else None,
            program=program,
        )

    async def _evaluate(self, job: GridJob, attempt_id: int, code: str, func_name: str):
        val, test = job.labels["val"], job.labels["test"]
        async with self.eval_slots:
            ev = await evaluate_async(
                code,
                func_name,
                job.stored.point.task.kind,
                job.eval_inputs,
                timeout=self.config.eval_timeout,
            )
        val_acc, val_correct, _ = ev.score(val)
        test_acc, test_correct, _ = ev.score(test, start=len(val))
        store.record_evaluation(
            self.db,
            attempt_id,
            {
                "status": ev.status,
                "limit_hit": ev.limit,
                "isolation": ev.isolation,
                "val_acc": val_acc,
                "val_correct": val_correct,
                "val_total": len(val),
                "test_acc": test_acc,
                "test_correct": test_correct,
                "test_total": len(test),
                "row_errors": ev.n_errors,
                "errors": json.dumps(ev.errors[:MAX_ERRORS_KEPT]),
                "duration_ms": ev.duration_ms,
            },
        )
        return val_acc, test_acc


class _NoMoreCalls(Exception):
    """The run stops making calls; the trial that wanted one stays unfinished."""


def _solved(results) -> bool:
    return any(v == 1.0 for _, v, _ in results)


def _response_record(provider, config: RunConfig, p: Proposal) -> dict:
    return {
        "provider": provider.name,
        "model": config.model,
        "status": p.status,
        "incomplete_reason": p.incomplete_reason,
        "text": p.text,
        "input_tokens": p.input_tokens,
        "cached_tokens": p.cached_tokens,
        "output_tokens": p.output_tokens,
        "reasoning_tokens": p.reasoning_tokens,
        "tool_calls": p.tool_calls,
        "tool_output_chars": p.tool_output_chars,
        "duration_ms": p.duration_ms,
        "response_id": p.response_id,
        "request_json": json.dumps(p.request),
        "raw_json": json.dumps(p.raw) if p.raw else None,
    }

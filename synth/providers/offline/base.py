"""What both offline proposers share: a fit in a worker process, answered as a Proposal.

A proposer sees what a model sees (the training examples of the prompt, the input kind)
and the seed, trial and attempt, from which alone it draws its randomness. The fit runs
in a process pool, one worker per core: it never blocks the event loop, and a search's
time budget buys the same work whatever --concurrency is (queued fits wait for a
worker; their budget starts when they do).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np

from synth.config import TIME_CAP
from synth.providers.base import Proposal, ProposeRequest, ProviderError


def rng_for(seed: int, trial: int, attempt: int) -> np.random.Generator:
    """The one source of randomness of an attempt."""
    return np.random.Generator(np.random.PCG64([seed % 2**64, trial, attempt]))


def _work(fit, train, val, kind, seed, trial, attempt, options) -> tuple[str, dict, dict, bool, float]:
    """In a worker: fit, then write the program. Returns (code, raw, params, capped,
    milliseconds), capped when a safety cap on the clock stopped the fit.
    ``val`` is None for a proposer that does not select on the validation split."""
    start = time.perf_counter()
    rng = rng_for(seed, trial, attempt)
    found = fit(train, kind, rng, attempt, **options) if val is None else fit(train, kind, rng, attempt, val)
    code = found.program()
    return code, found.describe(), found.params, found.capped, (time.perf_counter() - start) * 1000


class OfflineProvider:
    """A Provider whose proposals come from ``fit(train, kind, rng, attempt, **options)``,
    a module-level function returning an object with program(), describe() and params."""

    name: str
    fit = None  # set by subclasses (a staticmethod, so it pickles by name)
    selects_on_val = False  # True: fit(train, kind, rng, attempt, val) gets the validation split

    def __init__(self, **options):
        known = [p.name for p in inspect.signature(self.fit).parameters.values() if p.kind is p.KEYWORD_ONLY]
        if unknown := sorted(set(options) - set(known)):
            raise ProviderError(
                f"{self.name}: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})",
                kind="config",
                fatal=True,
            )
        self.options = options
        self._pool: ProcessPoolExecutor | None = None

    async def propose(self, req: ProposeRequest) -> Proposal:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("forkserver"))
        val = req.val if self.selects_on_val else None
        args = (type(self).fit, req.train, val, req.kind, req.seed, req.trial, req.attempt, self.options)
        try:
            code, raw, params, capped, ms = await asyncio.get_running_loop().run_in_executor(
                self._pool, _work, *args
            )
        except BrokenProcessPool as e:
            raise ProviderError(
                f"{self.name}: a worker process died ({e})", kind="proposer_crashed", fatal=True
            ) from None
        request = {
            "proposer": self.name,
            "seed": req.seed,
            "trial": req.trial,
            "attempt": req.attempt,
            **params,
        }
        return Proposal(
            text=json.dumps({"code": code}),
            # Stopped by the clock: the answer stands, marked as depending on the machine.
            status="incomplete" if capped else "completed",
            incomplete_reason=TIME_CAP if capped else None,
            input_tokens=0,
            cached_tokens=0,
            output_tokens=0,
            reasoning_tokens=0,
            tool_calls=0,
            tool_output_chars=0,
            duration_ms=ms,
            response_id=None,
            raw=raw,
            request=request,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # Off the loop: a fit still running (a cancelled run) finishes within its budget.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

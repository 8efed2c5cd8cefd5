"""Progress on stderr while a run goes: one rewritten status line on a terminal, plain
lines (one per finished trial) when stderr is a file or a pipe."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self,
        total_trials: int,
        done_trials: int = 0,
        stream: TextIO | None = None,
        solved_trials: int = 0,
        spent: float | None = 0.0,
    ):
        """``done_trials``, ``solved_trials`` and ``spent`` (USD; None: unknown): what a
        resumed run did before."""
        self.stream = stream or sys.stderr
        self.tty = self.stream is not None and self.stream.isatty()
        self.total = total_trials
        self.done = done_trials
        self.solved = solved_trials
        self.in_flight = 0
        self.token_count = 0
        self.spent = spent
        self.started = time.monotonic()

    def call_started(self) -> None:
        self.in_flight += 1
        self._status()

    def call_finished(self) -> None:
        self.in_flight -= 1
        self._status()

    def answered(self, tokens: int, spent: float | None) -> None:
        """A response came: its tokens, and the run's spend since."""
        self.token_count += tokens
        self.spent = spent

    def trial_done(self, job, trial: int, result: dict | None, label: str = "") -> None:
        """``result`` is None for a dry run's trial: its prompt is recorded, nothing scored.
        ``label`` names the run among several (a study's cell)."""
        self.done += 1
        point = job.stored.point
        if result is None:
            outcome = "prompt recorded (dry run)"
        else:
            self.solved += result["val_acc"] == 1.0
            outcome = (
                f"val {result['val_acc']:.3f} test {result['test_acc']:.3f} "
                f"(attempt {result['selected_attempt']})"
            )
        line = (
            f"[{self.done}/{self.total}] {label + ' ' if label else ''}{point.task.id} "
            f"L={point.length} trial {trial}: "
            f"{outcome} | solved {self.solved} | in flight {self.in_flight} | "
            f"tokens {self.token_count:,} | {self._cost()}"
        )
        if self.tty:
            self._write("\r\033[K" + line + "\n")
            self._status()
        else:
            self._write(line + "\n")

    def wave(self, wave: int, batch: dict, label: str = "") -> None:
        """A --batch run's batch reached a new status or count; ``label`` as trial_done's."""
        counts = batch.get("request_counts") or {}
        line = (
            f"{label + ' ' if label else ''}wave {wave}: batch {batch['id']} {batch['status']}, "
            f"{counts.get('completed', 0)} of {counts.get('total', 0)} requests done, {counts.get('failed', 0)} failed"
        )
        self._write(("\r\033[K" if self.tty else "") + line + "\n")
        self._status()

    def _status(self) -> None:
        if not self.tty:
            return
        elapsed = time.monotonic() - self.started
        self._write(
            f"\r\033[K{self.done}/{self.total} trials | solved {self.solved} | "
            f"in flight {self.in_flight} | tokens {self.token_count:,} | {self._cost()} | {elapsed:.0f}s"
        )

    def _cost(self) -> str:
        return "cost ?" if self.spent is None else f"cost ${self.spent:.4f}"

    def _write(self, text: str) -> None:
        """Progress is a courtesy: a stderr closed or full (`2>&-`, `| head -0`) silences
        it, and the run goes on, recorded as ever."""
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None


class CellProgress:
    """One run's view of a progress display shared by several (a study's cells): its
    finished trials are labelled with the run, and its spend adds to the others'."""

    def __init__(self, shared: Progress, label: str, spent: float | None = 0.0):
        self.shared, self.label, self.spent = shared, label, spent

    def call_started(self) -> None:
        self.shared.call_started()

    def call_finished(self) -> None:
        self.shared.call_finished()

    def answered(self, tokens: int, spent: float | None) -> None:
        known = None not in (self.shared.spent, self.spent, spent)
        total = self.shared.spent + spent - self.spent if known else None
        self.spent = spent
        self.shared.answered(tokens, total)

    def trial_done(self, job, trial: int, result: dict | None) -> None:
        self.shared.trial_done(job, trial, result, self.label)

    def wave(self, wave: int, batch: dict) -> None:
        self.shared.wave(wave, batch, self.label)

"""One program checked on one evaluation set: each chunk run by the sandbox (inputs
only), scored here against every reading's labels, the first counterexample kept.
Programs of the same code (trials that proposed the same program) share the run.

A chunk that does not end "ok" (a crash, a timeout, memory) ends the evaluation: its
unreached rows and every later chunk's rows count as wrong (they are still labelled,
so counts and counterexamples cover the whole set), and the status is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from synth.sandbox import evaluate
from synth.verification.sets import Chunk, EvalSet

# Sets that cover everything there is at their length: all-correct proves the rule.
COMPLETE = ("exhaustive", "population")
_MARK_VALUE = {ord("0"): 0, ord("1"): 1}


def check(
    programs: list[tuple[dict, Container[str]]], kind: str, evalset: EvalSet, *, timeout: float
) -> list[dict]:
    """Verification rows (one per program and reading) of programs that share one code on
    ``evalset``: the code runs once, and each program is scored as if checked alone.
    Each comes with ``seen``, the inputs of its run's dataset, counted so that overlap is
    visible."""
    code, func_name = programs[0][0]["code"], programs[0][0]["func_name"]
    seens = {id(seen): seen for _, seen in programs}
    tallies: dict[int, dict[str, dict]] = {key: {} for key in seens}
    overlaps = dict.fromkeys(seens, 0)
    status, errors, duration, isolation = "ok", [], 0.0, None
    for inputs, labels in _prefetched(evalset.chunks()):
        if status == "ok":
            ev = evaluate(code, func_name, kind, inputs, timeout=timeout)
            duration += ev.duration_ms
            isolation = ev.isolation if isolation is None else isolation
            status, errors = ev.status, errors or ev.errors
            marks = np.frombuffer(ev.marks, dtype=np.uint8)
        else:  # not run after a failed chunk: every row counts as wrong
            marks = np.zeros(len(inputs), dtype=np.uint8)
        for key, seen in seens.items():
            unseen = ~np.fromiter(map(seen.__contains__, inputs), dtype=bool, count=len(inputs))
            overlaps[key] += int(len(inputs) - unseen.sum())
            for rule, truth in labels.items():
                _score(tallies[key].setdefault(rule, _empty()), inputs, marks, truth, unseen)
    return [
        _row(program, evalset, rule, t, status, errors, duration, isolation, overlaps[id(seen)])
        for program, seen in programs
        for rule, t in tallies[id(seen)].items()
    ]


def _prefetched(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """The chunks, each next one made (inputs drawn, labelled) in a thread while the
    sandbox runs the current one: on two cores the two overlap."""
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(next, chunks, None)
        while (chunk := ahead.result()) is not None:
            ahead = pool.submit(next, chunks, None)
            yield chunk


def _empty() -> dict:
    return {"correct": 0, "positives": 0, "unseen_correct": 0, "counterexample": None}


def _score(t: dict, inputs: list[str], marks: np.ndarray, truth: np.ndarray, unseen: np.ndarray) -> None:
    right = marks == truth + ord("0")
    t["correct"] += int(right.sum())
    t["unseen_correct"] += int((right & unseen).sum())
    t["positives"] += int(truth.sum())
    if t["counterexample"] is None and not right.all():
        i = int(np.argmin(right))
        t["counterexample"] = {
            "input": inputs[i],
            "expected": int(truth[i]),
            "got": _MARK_VALUE.get(int(marks[i])),  # None: the row raised or was not reached
        }


def _row(program, evalset: EvalSet, rule, t, status, errors, duration, isolation, overlap) -> dict:
    n, correct = evalset.size, t["correct"]
    if evalset.kind in COMPLETE:
        exact = int(correct == n)
    else:  # a counterexample disproves the rule; none found proves nothing
        exact = 0 if correct < n else None
    return {
        "run_id": program["run_id"],
        "attempt_id": program["attempt_id"],
        "program_hash": program["program_hash"],
        "fn": program["fn"],
        "trial": program["trial"],
        "attempt": program["attempt"],
        "selected": program["selected"],
        "train_length": program["train_length"],
        "eval_length": evalset.length,
        "set_kind": evalset.kind,
        "set_key": evalset.key,
        "rule": rule,
        "dataset_id": evalset.dataset_id,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "positives": t["positives"],
        "exact": exact,
        "counterexample": json.dumps(t["counterexample"]) if t["counterexample"] else None,
        "seen": overlap,
        "unseen_n": n - overlap,
        "unseen_correct": t["unseen_correct"],
        "status": status,
        "errors": json.dumps(errors[:5]),
        "duration_ms": duration,
        "isolation": isolation or "",
    }

"""Verifications in the store: the programs a run recorded, and what `synth verify`
found when it re-checked them on other evaluation sets (table ``verifications``)."""

from __future__ import annotations

import json

import sqlite_utils

from tracker.runs import now

# What --json prints per program x evaluation set x rule, in this order.
JSON_KEYS = (
    "run_id",
    "fn",
    "trial",
    "attempt",
    "train_length",
    "eval_length",
    "set",
    "rule",
    "n",
    "correct",
    "accuracy",
    "exact",
    "counterexample",
    "status",
    "positives",
    "seen",
    "unseen_n",
    "unseen_correct",
    "duration_ms",
    "isolation",
    "selected",
    "program_hash",
)


def recorded_programs(db: sqlite_utils.Database, run_id: str, which: str) -> list[dict]:
    """A run's programs with what verifying them needs: ``which`` is "selected" (each
    trial's selected attempt) or "all" (every attempt that produced a program)."""
    only_selected = "and a.attempt = t.selected_attempt" if which == "selected" else ""
    return [
        dict(r)
        for r in db.query(
            f"""
            select t.run_id, t.fn, t.trial, t.length as train_length, a.attempt,
              a.id as attempt_id, a.func_name, a.program_hash, p.code,
              t.dataset_id, d.derived_seed, a.attempt = t.selected_attempt as selected
            from attempts a
            join trials t on t.id = a.trial_id
            join programs p on p.hash = a.program_hash
            join datasets d on d.id = t.dataset_id
            where t.run_id = ? and a.func_name is not null {only_selected}
            order by t.fn, t.length, t.trial, a.attempt
            """,
            [run_id],
        )
    ]


def verified_sets(db: sqlite_utils.Database, attempt_ids: list[int]) -> set[tuple[int, int, str]]:
    """(attempt_id, eval_length, set_key) already verified: a verify run again skips them."""
    return {
        (r["attempt_id"], r["eval_length"], r["set_key"])
        for r in db.query(
            "select distinct attempt_id, eval_length, set_key from verifications "
            "where attempt_id in (select value from json_each(?))",
            [json.dumps(attempt_ids)],
        )
    }


def record_verification(db: sqlite_utils.Database, rows: list[dict]) -> None:
    """One program x evaluation set (a row per rule reading) in one transaction: a
    verify killed at any moment has recorded each set whole or not at all."""
    stamp = now()
    with db.conn:
        for row in rows:
            record = {**row, "created_at": stamp}
            db.conn.execute(
                f"insert or ignore into verifications ({', '.join(record)}) "
                f"values ({', '.join('?' * len(record))})",
                list(record.values()),
            )


def verification_rows(db: sqlite_utils.Database, run_ids: list[str]) -> list[dict]:
    """Every stored verification of these runs, in a stable order, with JSON_KEYS (and the
    set_key and attempt_id a caller selects by)."""
    rows = db.query(
        """
        select v.*, v.set_kind as "set" from verifications v
        where v.run_id in (select value from json_each(?))
        order by v.run_id, v.fn, v.train_length, v.trial, v.attempt, v.eval_length,
          v.set_kind, v.rule
        """,
        [json.dumps(run_ids)],
    )
    return [_shaped(r) for r in rows]


def _shaped(row: dict) -> dict:
    out = {k: row[k] for k in JSON_KEYS}
    out["exact"] = None if row["exact"] is None else bool(row["exact"])
    out["selected"] = bool(row["selected"])
    out["counterexample"] = json.loads(row["counterexample"]) if row["counterexample"] else None
    out["attempt_id"], out["set_key"] = row["attempt_id"], row["set_key"]
    return out

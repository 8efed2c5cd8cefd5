"""The studies table and its cells' links to their runs (synth.study runs them)."""

from __future__ import annotations

import sqlite_utils

from tracker.runs import now, translated


class StudyChanged(Exception):
    """A study of that name exists with another file: the message names what differs."""


@translated
def record_study(db: sqlite_utils.Database, name: str, spec: str, sha256: str, path: str) -> bool:
    """Store a new study; True when it was new, False when the same study was stored.
    Raises StudyChanged when one of that name holds another file."""
    with db.conn:
        db.conn.execute("begin immediate")
        row = db.conn.execute("select spec, sha256 from studies where name = ?", [name]).fetchone()
        if row is None:
            db.conn.execute(
                "insert into studies (name, spec, sha256, path, created_at) values (?, ?, ?, ?, ?)",
                [name, spec, sha256, path, now()],
            )
            return True
    if row[1] != sha256:
        raise StudyChanged(row[0])
    return False


@translated
def get_study(db: sqlite_utils.Database, name: str) -> dict | None:
    rows = list(db["studies"].rows_where("name = ?", [name]))
    return rows[0] if rows else None


@translated
def study_cells(db: sqlite_utils.Database, name: str) -> list[dict]:
    """Each cell of the study with its run's state, in the order the cells were made."""
    return list(db.query("select * from study_cells where study = ? order by rowid", [name]))


@translated
def list_studies(db: sqlite_utils.Database) -> list[dict]:
    return list(
        db.query(
            """
            select s.name, s.created_at, s.path, count(c.run_id) as runs,
              coalesce(sum(c.status = 'completed'), 0) as completed,
              coalesce(sum(c.trials_done), 0) as trials_done, coalesce(sum(c.trials), 0) as trials
            from studies s left join study_cells c on c.study = s.name
            group by s.name order by s.created_at desc
            """
        )
    )

"""`synth merge`: other databases folded into one. Datasets are matched by fingerprint
(their examples copied once); runs are copied with everything under them, with new row
ids and their run ids kept; the shards of one experiment (`synth run --shard I/N`, one
run id, one settings fingerprint) become one run. A run or shard the destination holds
in the same state is left as it is, so merging a source twice changes nothing; one it
holds in an earlier state is replaced by the source's.

Every source is checked before anything is written (ours, not newer, not outdated, not
the destination itself, no run id naming two different runs); then each is attached
read-only and copied with INSERT ... SELECT in one transaction."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from tracker.db import OutdatedDatabase, StoreError, check_file, check_writable, open_db
from tracker.files import same_file
from tracker.runs import now
from tracker.shards import assign

# How a merge copies each table (a test checks that every table the migrations make is
# here: a new table must say how it is merged).
TABLES = {
    "datasets": "matched by fingerprint; one the destination lacks is added, with a new id",
    "examples": "with their dataset, when it is added",
    "dataset_audits": "with their dataset, when it is added",
    "prompts": "by hash, once",
    "programs": "by hash, once",
    "task_files": "by hash, once",
    "studies": "by name, once (one name with another study file is refused)",
    "runs": "by run id: added, or left as it is; a merged shard's run is its shards' status",
    "run_datasets": "with their run",
    "run_tasks": "with their run",
    "study_runs": "with their run",
    "run_shards": "one row per shard merged, naming the database it came from",
    "trials": "with their run or shard, new ids",
    "attempts": "with their trial, new ids",
    "responses": "with their attempt",
    "evaluations": "with their attempt",
    "events": "with their run or shard, new ids",
    "verifications": "with their attempt, new ids",
    "batches": "with their run, by key, new ids (a batch merged again replaces its row)",
}
CACHE_KIB = 131_072  # SQLite's page cache while merging (128 MiB at most, as needed)
# A shard that was merged takes its status from its run then (a merged run's own status
# is its shards', see _refresh).
FINAL = ("completed", "dry_run")


@dataclass
class Run:
    """What identifies a stored run: its start, or for a sharded one each shard's start,
    its shard count and its experiment's settings."""

    run_id: str
    created_at: str
    where: str
    shards: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # shard: (N, settings, start)
    running_here: int | None = None  # the shard this database runs (its own, not merged)


def merge_databases(dest: str | Path, sources: list[str | Path]) -> list[dict]:
    """Fold ``sources`` into ``dest`` (created if absent); per run or shard of each source,
    what was done: added, replaced (the destination held an earlier state) or unchanged."""
    dest = Path(dest)
    if not sources:
        raise StoreError("give at least one database to merge")
    known, studies = _destination(dest)
    for source in map(Path, sources):
        check_file(source)
        if not source.exists():
            raise StoreError(f"no database at {source}")
        if same_file(source, dest):
            raise StoreError(f"cannot merge {source} into itself")
        with open_db(source, readonly=True) as db:  # ours, up to date, not newer
            incoming, their_studies = _read(db, str(source))
        for run in incoming.values():
            run.running_here = None  # only the destination's own shard matters
            known[run.run_id] = _fold(known.get(run.run_id), run)
        for name, (sha, where) in their_studies.items():
            if studies.setdefault(name, (sha, where))[0] != sha:
                raise StoreError(
                    f"study {name!r} in {where} is not the one in {studies[name][1]} (their files differ)"
                )
    done = []
    with open_db(dest) as db:
        # Rows arrive in the order of their ids, their hashes in no order: a page cache
        # that holds the indexes being filled keeps them off the disk (3x faster).
        db.execute(f"pragma cache_size = -{CACHE_KIB}")
        for source in map(Path, sources):
            done += _merge_one(db, source)
    return done


def _destination(dest: Path) -> tuple[dict[str, Run], dict[str, tuple[str, str]]]:
    check_writable(dest)
    if not dest.exists():
        return {}, {}
    try:
        with open_db(dest, readonly=True) as db:
            return _read(db, str(dest))
    except OutdatedDatabase:  # migrated when it is opened to be written
        with open_db(dest) as db:
            return _read(db, str(dest))


def _read(db: sqlite_utils.Database, where: str) -> tuple[dict[str, Run], dict[str, tuple[str, str]]]:
    """A database's runs (with their shards) and studies (name: (sha256, where))."""
    runs = {r: Run(r, created, where) for r, created in db.execute("select run_id, created_at from runs")}
    for run_id, shard, shards, settings, created, source in db.execute(
        "select run_id, shard, shards, settings_sha256, created_at, source from run_shards"
    ):
        runs[run_id].shards[shard] = (shards, settings, created)
        if source is None:
            runs[run_id].running_here = shard
    studies = {name: (sha, where) for name, sha in db.execute("select name, sha256 from studies")}
    return runs, studies


def _fold(held: Run | None, new: Run) -> Run:
    """``held`` with ``new`` merged in; refused when they are not one run (or one
    experiment's shards)."""
    if held is None:
        return new
    name = repr(new.run_id)
    if held.running_here is not None and set(new.shards) - {held.running_here}:
        raise StoreError(
            f"{held.where} is the database shard {held.running_here} of run {name} runs in: "
            "merge the shards into a new database"
        )
    if bool(held.shards) != bool(new.shards):
        sharded, whole = (held, new) if held.shards else (new, held)
        raise StoreError(
            f"run {name} is sharded in {sharded.where} but a whole run in {whole.where}: "
            "two different runs with one run id; merge them into separate databases"
        )
    if not new.shards:
        if held.created_at != new.created_at:
            raise StoreError(
                f"{held.where} and {new.where} hold two different runs named {name} (started "
                f"{held.created_at} and {new.created_at}); merge them into separate databases"
            )
        return held
    (n, settings, _), (m, other, _) = next(iter(held.shards.values())), next(iter(new.shards.values()))
    if (n, settings) != (m, other):
        raise StoreError(
            f"the shards of run {name} in {held.where} and in {new.where} are not one experiment "
            f"({'their settings differ' if settings != other else f'{n} and {m} shards'}); "
            "give each experiment its own --run-id"
        )
    for shard, (_, _, created) in new.shards.items():
        if shard in held.shards and held.shards[shard][2] != created:
            raise StoreError(
                f"shard {shard}/{n} of run {name} was run twice (started {held.shards[shard][2]} "
                f"in {held.where} and {created} in {new.where}); merge only one of them"
            )
    return Run(held.run_id, held.created_at, held.where, {**held.shards, **new.shards}, held.running_here)


def _merge_one(db: sqlite_utils.Database, source: Path) -> list[dict]:
    conn = db.conn
    conn.execute("attach database ? as src", [f"{source.resolve().as_uri()}?mode=ro"])
    try:
        conn.execute("begin immediate")
        try:
            done = _copy(conn, source)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    except sqlite3.IntegrityError as e:
        raise StoreError(
            f"cannot merge {source}: it holds a record that conflicts with the destination's ({e})"
        ) from None
    finally:
        conn.execute("detach database src")
    return done


def _copy(conn: sqlite3.Connection, source: Path) -> list[dict]:
    """Everything of the attached ``src`` the destination lacks, in the open transaction."""
    _copy_datasets(conn)
    for table in ("prompts", "programs", "task_files", "studies"):
        conn.execute(f"insert or ignore into main.{table} select * from src.{table}")
    units, done = [], []
    for (run_id,) in conn.execute("select run_id from src.runs order by created_at, run_id").fetchall():
        shards = conn.execute(
            "select shard, shards from src.run_shards where run_id = ? order by shard", [run_id]
        ).fetchall()
        for shard, n in shards or [(None, None)]:
            action = _action(conn, run_id, shard)
            if action != "unchanged":
                units.append((run_id, shard))
            done.append(
                {"source": str(source), "run_id": run_id, "shard": shard and f"{shard}/{n}", "action": action}
            )
    conn.execute("create temp table todo (run_id text, shard integer)")
    try:
        conn.executemany("insert into temp.todo values (?, ?)", units)
        _copy_runs(conn, str(source))
    finally:
        for table in ("todo", "tmap", "amap", "dmap"):
            conn.execute(f"drop table if exists temp.{table}")
    for run_id in dict.fromkeys(r for r, shard in units if shard is not None):
        _refresh(conn, run_id)
    return done


def _copy_datasets(conn: sqlite3.Connection) -> None:
    """The source's datasets the destination lacks (by fingerprint), with their examples
    and audits; temp.dmap maps every source dataset id to the destination's."""
    conn.execute(
        "create temp table newds as select id from src.datasets "
        "where fingerprint not in (select fingerprint from main.datasets)"
    )
    try:
        _insert_select(
            conn, "datasets", "src.datasets x where x.id in (select id from temp.newds) order by x.id"
        )
        conn.execute("create temp table dmap (old integer primary key, new integer)")
        conn.execute(
            "insert into temp.dmap select s.id, m.id from src.datasets s join main.datasets m on m.fingerprint = s.fingerprint"
        )
        for table in ("examples", "dataset_audits"):
            _insert_select(
                conn,
                table,
                f"src.{table} x join temp.dmap on dmap.old = x.dataset_id "
                "where x.dataset_id in (select id from temp.newds)",
                dataset_id="dmap.new",
            )
    finally:
        conn.execute("drop table temp.newds")


def _insert_select(
    conn: sqlite3.Connection, table: str, rows_from: str, params=(), *, verb: str = "insert", **mapped
) -> None:
    """``insert into main.table select <its columns> from <rows_from>``: each column read as
    ``x.column`` unless ``mapped`` gives it an expression (``params`` fill its ``?``, in
    column order); an integer ``id`` key is left for SQLite to give anew."""
    columns = [c for _, c, *_ in conn.execute(f"pragma main.table_info([{table}])") if c != "id"]
    values = ", ".join(mapped.get(c, f"x.[{c}]") for c in columns)
    names = ", ".join(f"[{c}]" for c in columns)
    conn.execute(f"{verb} into main.[{table}] ({names}) select {values} from {rows_from}", params)


def _action(conn: sqlite3.Connection, run_id: str, shard: int | None) -> str:
    """Whether the destination lacks this run (or shard), holds it as the source does,
    or holds an earlier state of it (then it is deleted, to be copied again)."""
    held = conn.execute("select 1 from main.runs where run_id = ?", [run_id]).fetchone()
    if shard is not None and held:
        held = conn.execute(
            "select 1 from main.run_shards where run_id = ? and shard = ?", [run_id, shard]
        ).fetchone()
    if not held:
        return "added"
    if _state(conn, "main", run_id, shard) == _state(conn, "src", run_id, shard):
        return "unchanged"
    _delete(conn, run_id, shard)
    return "replaced"


def _state(conn: sqlite3.Connection, schema: str, run_id: str, shard: int | None) -> tuple:
    """What a run (or shard) has done so far: its status, trials done, attempts, events."""
    if shard is None:
        status = conn.execute(f"select status, finished_at from {schema}.runs where run_id = ?", [run_id])
    else:
        status = conn.execute(
            f"select coalesce(s.status, r.status), coalesce(s.finished_at, r.finished_at) "
            f"from {schema}.run_shards s join {schema}.runs r on r.run_id = s.run_id "
            "where s.run_id = ? and s.shard = ?",
            [run_id, shard],
        )
    of_unit = "run_id = ? and (? is null or shard = ?)"
    trials = conn.execute(
        f"select count(*), total(attempts_made), total(status = 'done'), max(finished_at) "
        f"from {schema}.trials where {of_unit}",
        [run_id, shard, shard],
    )
    events = conn.execute(
        f"select count(*), max(ts) from {schema}.events where {of_unit}", [run_id, shard, shard]
    )
    return (status.fetchone(), trials.fetchone(), events.fetchone())


def _delete(conn: sqlite3.Connection, run_id: str, shard: int | None) -> None:
    """The destination's rows of a run (or of one shard of it), to be copied again."""
    unit = [run_id, shard, shard]
    trials = "select id from main.trials where run_id = ? and (? is null or shard = ?)"
    attempts = f"select id from main.attempts where trial_id in ({trials})"
    for table in ("verifications", "evaluations", "responses"):
        conn.execute(f"delete from main.{table} where attempt_id in ({attempts})", unit)
    conn.execute(f"delete from main.attempts where trial_id in ({trials})", unit)
    conn.execute("delete from main.events where run_id = ? and (? is null or shard = ?)", unit)
    conn.execute(f"delete from main.trials where id in ({trials})", unit)
    if shard is None:
        for table in ("verifications", "run_datasets", "run_tasks", "study_runs", "batches", "runs"):
            conn.execute(f"delete from main.{table} where run_id = ?", [run_id])


# A source row of a table with a run_id and a shard that belongs to a run or shard to copy.
IN_TODO = "join temp.todo u on u.run_id = x.run_id and (u.shard is null or x.shard = u.shard)"
# A source row of a run with a run or shard to copy.
OF_TODO = "x.run_id in (select run_id from temp.todo)"


def _copy_runs(conn: sqlite3.Connection, source: str) -> None:
    """Every run and shard in temp.todo, with everything under it."""
    conn.execute(
        f"insert into main.runs select x.* from src.runs x "
        f"where {OF_TODO} and x.run_id not in (select run_id from main.runs)"
    )
    # The grid in its order (the exports follow it); a shard's run brings it again: ignored.
    _insert_select(
        conn,
        "run_datasets",
        f"src.run_datasets x join temp.dmap on dmap.old = x.dataset_id where {OF_TODO} order by x.rowid",
        verb="insert or ignore",
        dataset_id="dmap.new",
    )
    for table in ("run_tasks", "study_runs"):
        _insert_select(conn, table, f"src.{table} x where {OF_TODO}", verb="insert or ignore")
    _insert_select(
        conn,
        "run_shards",
        f"src.run_shards x join src.runs r on r.run_id = x.run_id {IN_TODO}",
        [source, now()],
        verb="insert or replace",
        status="coalesce(x.status, r.status)",
        finished_at="coalesce(x.finished_at, r.finished_at)",
        source="?",
        merged_at="?",
    )
    _insert_select(
        conn,
        "trials",
        f"src.trials x {IN_TODO} join temp.dmap on dmap.old = x.dataset_id order by x.id",
        dataset_id="dmap.new",
    )
    conn.execute("create temp table tmap (old integer primary key, new integer)")
    conn.execute(
        f"insert into temp.tmap select x.id, m.id from src.trials x {IN_TODO} join main.trials m "
        "on m.run_id = x.run_id and m.fn = x.fn and m.length = x.length and m.trial = x.trial"
    )
    _insert_select(
        conn,
        "attempts",
        "src.attempts x join temp.tmap on tmap.old = x.trial_id order by x.id",
        trial_id="tmap.new",
    )
    conn.execute("create temp table amap (old integer primary key, new integer)")
    conn.execute(
        "insert into temp.amap select x.id, m.id from src.attempts x join temp.tmap on tmap.old = x.trial_id "
        "join main.attempts m on m.trial_id = tmap.new and m.attempt = x.attempt"
    )
    for table in ("responses", "evaluations"):
        _insert_select(
            conn, table, f"src.{table} x join temp.amap on amap.old = x.attempt_id", attempt_id="amap.new"
        )
    _insert_select(
        conn,
        "events",
        f"src.events x {IN_TODO} left join temp.tmap on tmap.old = x.trial_id order by x.id",
        trial_id="tmap.new",
    )
    _insert_select(
        conn,
        "verifications",
        "src.verifications x join temp.amap on amap.old = x.attempt_id "
        "left join temp.dmap on dmap.old = x.dataset_id order by x.id",
        attempt_id="amap.new",
        dataset_id="dmap.new",
    )
    # Its Batch API batches, as they were sent (custom ids name the source's trial ids).
    _insert_select(conn, "batches", f"src.batches x where {OF_TODO} order by x.id", verb="insert or replace")


def _refresh(conn: sqlite3.Connection, run_id: str) -> None:
    """A merged sharded run's row: completed (or dry_run) once all its shards are, each
    merged at its end; ``partial`` while some are missing (its error names them); else
    the status of its first shard that did not end so. No process runs it here."""
    rows = conn.execute(
        "select shard, shards, status, created_at, finished_at from main.run_shards where run_id = ? order by shard",
        [run_id],
    ).fetchall()
    n = rows[0][1]
    missing = sorted(set(range(1, n + 1)) - {r[0] for r in rows})
    statuses = [r[2] for r in rows]
    if missing:
        status = "partial"
    elif len(set(statuses)) == 1 and statuses[0] in FINAL:
        status = statuses[0]
    else:
        status = next(s for s in statuses if s not in FINAL)
    error = f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} not merged yet" if missing else None
    # Each grid point counts the trials of the shards merged (in a shard's own database,
    # its own share): trials not started are that count less the rows.
    points = conn.execute(
        "select fn, length from main.run_datasets where run_id = ? order by rowid", [run_id]
    ).fetchall()
    (num_trials,) = conn.execute(
        "select json_extract(config, '$.num_trials') from main.runs where run_id = ?", [run_id]
    ).fetchone()
    held = {r[0] for r in rows}
    counts = Counter(
        (fn, length) for (fn, length, _), s in assign(points, num_trials, n).items() if s in held
    )
    conn.executemany(
        "update main.run_datasets set trials = ? where run_id = ? and fn = ? and length = ?",
        [(counts[fn, length], run_id, fn, length) for fn, length in points],
    )
    ended = None if missing or status not in FINAL else max(r[4] for r in rows)
    conn.execute(
        "update main.runs set status = ?, error = ?, finished_at = ?, created_at = ?, "
        "config = json_set(config, '$.shard', null), "
        "environment = json_remove(coalesce(environment, '{}'), '$.pid') where run_id = ?",
        [status, error, ended, min(r[3] for r in rows), run_id],
    )

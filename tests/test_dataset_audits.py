"""Each dataset's leakage audit, kept once when it is stored (and, for a database from
before, once by the migration), and read by the report instead of every example."""

import sqlite3

import sqlite_utils
from helpers import LEAKY_ROWS as LEAKY
from helpers import dataset_meta

from reports import analyse
from tracker.audits import COUNTS, audit_stored
from tracker.datasets import save_dataset
from tracker.db import open_db
from tracker.migrations import migrations

EXPECTED = {
    "train_rows": 2,
    "val_rows": 2,
    "test_rows": 3,
    "train_duplicates": 0,
    "val_duplicates": 0,
    "test_duplicates": 1,
    "input_train_val": 1,
    "input_train_test": 1,
    "input_val_test": 0,
    "line_train_val": 0,
    "line_train_test": 1,
    "line_val_test": 0,
    "input_overlap": 2,
    "clean": 0,
}


def test_a_dataset_is_audited_when_stored(tmp_path):
    db = open_db(tmp_path / "s.db")
    dataset_id = save_dataset(db, dataset_meta("f1", "fn_g"), LEAKY)
    row = db["dataset_audits"].get(dataset_id)
    assert {k: row[k] for k in EXPECTED} == EXPECTED
    assert {k: row[k] for k in COUNTS} == {
        k: v for k, v in audit_stored(db, dataset_id).items() if k in COUNTS
    }
    assert save_dataset(db, dataset_meta("f1", "fn_g"), LEAKY) == dataset_id  # stored once, audited once
    assert db["dataset_audits"].count == 1


def test_the_migration_audits_datasets_stored_before(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m008_dataset_audits")
    meta = {**dataset_meta("f1", "fn_g"), "created_at": "2026-01-01T00:00:00+00:00"}
    old["datasets"].insert({"id": 7, **meta})
    old["examples"].insert_all(
        {"dataset_id": 7, "split": s, "idx": i, "input": x, "label": y} for s, i, x, y in LEAKY
    )
    old.close()
    db = open_db(path)  # migrates
    row = db["dataset_audits"].get(7)
    assert {k: row[k] for k in EXPECTED} == EXPECTED


def test_the_report_reads_the_stored_audit(fresh_report_db):
    with sqlite3.connect(fresh_report_db) as conn:  # marks the audits, to see where they come from
        conn.execute("update dataset_audits set train_rows = 99")
        (unaudited,) = conn.execute("select min(dataset_id) from dataset_audits").fetchone()
        conn.execute("delete from dataset_audits where dataset_id = ?", [unaudited])
    rows = {d["dataset_id"]: d for d in analyse(fresh_report_db, ["r1", "r2", "r3"])["leakage"]}
    assert rows[unaudited]["train_rows"] == 2  # no stored audit: audited from its examples
    assert {d["train_rows"] for i, d in rows.items() if i != unaudited} == {99}
    leaky = next(d for d in rows.values() if not d["clean"])
    assert leaky["clean"] is False and leaky["input_overlap"] == 2

"""The published runner's exports, rebuilt from the database alone.

`results_attempts.jsonl` holds each trial's selected row, then the grid point's summary
row; `results_attempts.csv` holds every attempt row plus the summary rows; the manifest
describes the run; per-trial logs hold every attempt of one trial. The same database
always gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from tracker.exact_stats import pstdev
from tracker.files import remove_parts, write_all_atomic
from tracker.verifications import JSON_KEYS, verification_rows

# A call's time and token counts, as the published header names them.
TOKEN_COLUMNS = (
    "duration_ms",
    "cached_tokens",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "tool_uses",
    "tool_results_chars",
)
# The dataset a grid point used: its fingerprint and the split sizes it really has (a
# tabular test split may be capped below the requested --test-size).
EFFECTIVE_COLUMNS = ("dataset_fingerprint", "train_effective", "val_effective", "test_effective")
# The published CSV header, in order; our extra columns follow it.
PUBLISHED_COLUMNS = (
    "run_id",
    "model",
    "reasoning_effort",
    "max_output_tokens",
    "tool_choice",
    "enable_code_interpreter",
    "global_seed",
    "dataset_seed",
    "train_size",
    "val_size",
    "test_size",
    "dataset_dir",
    "attempts_requested",
    "num_trials_requested",
    "dry_run",
    "fn",
    "length",
    "attempt",
    "trial",
    "prompt",
    "text",
    *TOKEN_COLUMNS,
    "val_acc",
    "val_acc_std",
    "test_acc",
    "test_acc_std",
    "stopped_early",
    "compile_error",
    "num_trials",
    "is_summary",
)
EXTRA_COLUMNS = (
    "provider",
    "api_mode",
    "status",
    "failure_class",
    "response_status",
    "incomplete_reason",
    "eval_status",
    "limit_hit",
    "val_correct",
    "val_total",
    "test_correct",
    "test_total",
    "row_errors",
    "selected",
    "test_oracle",
    "oracle_test_acc",
    "oracle_test_acc_std",
    "response_id",
    *EFFECTIVE_COLUMNS,
    "code",
)
COLUMNS = PUBLISHED_COLUMNS + EXTRA_COLUMNS


@dataclass(frozen=True)
class ExportPaths:
    jsonl: Path
    csv: Path
    manifest: Path

    def trial_log(self, fn: str, length: int, trial: int) -> Path:
        return self.jsonl.with_name(f"{self.jsonl.stem}_{fn}_L{length}_trial{trial}.jsonl")

    @property
    def verifications(self) -> tuple[Path, Path]:
        """Where `synth verify`'s rows go (JSONL, CSV), beside the run's own exports."""
        return (
            self.jsonl.with_name(f"{self.jsonl.stem}_verifications.jsonl"),
            self.csv.with_name(f"{self.csv.stem}_verifications.csv"),
        )


ATTEMPT_QUERY = """
select t.fn, t.length, t.trial, a.attempt, a.status, a.failure_class, a.error,
  a.attempt = t.selected_attempt as selected, a.attempt = t.oracle_attempt as test_oracle,
  p.text as prompt, s.text, s.duration_ms, s.cached_tokens, s.input_tokens,
  s.output_tokens, s.reasoning_tokens, s.tool_calls, s.tool_output_chars, s.status as
  response_status, s.incomplete_reason, s.response_id, e.status as eval_status,
  e.limit_hit, e.val_acc, e.val_correct, e.val_total, e.test_acc, e.test_correct,
  e.test_total, e.row_errors, g.code, d.derived_seed, d.fingerprint, d.train_effective,
  d.val_effective, d.test_effective,
  t.stopped_early as trial_stopped_early, t.selected_attempt
from attempts a
join trials t on t.id = a.trial_id
join run_datasets rd on rd.run_id = t.run_id and rd.fn = t.fn and rd.length = t.length
join datasets d on d.id = t.dataset_id
left join prompts p on p.hash = a.prompt_hash
left join responses s on s.attempt_id = a.id
left join evaluations e on e.attempt_id = a.id
left join programs g on g.hash = a.program_hash
where t.run_id = ?
order by rd.rowid, t.trial, a.attempt
"""


def run_metadata(run: dict) -> dict:
    """The run columns every published row carries. The API settings are left empty for
    an offline proposer, which never reads them (its config keeps the flags' defaults)."""
    config = json.loads(run["config"])
    api = config["provider"] == "openai"
    return {
        "run_id": run["run_id"],
        "model": config["model"],
        "reasoning_effort": config["reasoning_effort"] if api else None,
        "max_output_tokens": config["max_output_tokens"] if api else None,
        "tool_choice": config["tool_choice"] if api else None,
        "enable_code_interpreter": config["enable_code_interpreter"] if api else None,
        "global_seed": config["seed"],
        "train_size": config["train_size"],
        "val_size": config["val_size"],
        "test_size": config["test_size"],
        "dataset_dir": config["dataset_dir"] or "",
        "attempts_requested": config["attempts"],
        "num_trials_requested": config["num_trials"],
        "dry_run": bool(config["dry_run"]),
        "provider": config["provider"],
        "api_mode": config["api_mode"] if api else None,
    }


def attempt_row(meta: dict, r: dict) -> dict:
    failed = r["failure_class"] is not None
    return {
        **meta,
        "dataset_seed": r["derived_seed"],
        "fn": r["fn"],
        "length": r["length"],
        "attempt": r["attempt"],
        "trial": r["trial"],
        "prompt": r["prompt"] or "",
        "text": r["text"] or "",
        "duration_ms": r["duration_ms"] or 0,
        "cached_tokens": r["cached_tokens"] or 0,
        "prompt_tokens": r["input_tokens"] or 0,
        "completion_tokens": r["output_tokens"] or 0,
        "reasoning_tokens": r["reasoning_tokens"] or 0,
        "tool_uses": r["tool_calls"] or 0,
        "tool_results_chars": r["tool_output_chars"] or 0,
        "val_acc": r["val_acc"] if r["val_acc"] is not None else 0.0,
        "val_acc_std": None,
        "test_acc": r["test_acc"] if r["test_acc"] is not None else 0.0,
        "test_acc_std": None,
        "stopped_early": bool(r["trial_stopped_early"]) and r["attempt"] == r["selected_attempt"],
        "compile_error": (f"{r['failure_class']}: {r['error']}" if r["error"] else r["failure_class"])
        if failed
        else "",
        "num_trials": None,
        "is_summary": False,
        "status": r["status"],
        "failure_class": r["failure_class"],
        "response_status": r["response_status"],
        "incomplete_reason": r["incomplete_reason"],
        "eval_status": r["eval_status"],
        "limit_hit": r["limit_hit"],
        "val_correct": r["val_correct"],
        "val_total": r["val_total"],
        "test_correct": r["test_correct"],
        "test_total": r["test_total"],
        "row_errors": r["row_errors"],
        "selected": bool(r["selected"]),
        "test_oracle": bool(r["test_oracle"]),
        "oracle_test_acc": None,
        "oracle_test_acc_std": None,
        "response_id": r["response_id"],
        "dataset_fingerprint": r["fingerprint"],
        "train_effective": r["train_effective"],
        "val_effective": r["val_effective"],
        "test_effective": r["test_effective"],
        "code": r["code"],
    }


def summarise(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation over trials, as the published summaries."""
    return statistics.fmean(values), pstdev(values)


def summary_row(meta: dict, rows: list[dict]) -> dict:
    """One grid point: mean and population std over trials of the selected accuracies."""
    selected = [r for r in rows if r["selected"]]
    trials = {r["trial"]: r for r in rows}
    val, val_std = summarise([r["val_acc"] for r in selected])
    test, test_std = summarise([r["test_acc"] for r in selected])
    oracle, oracle_std = summarise([r["test_acc"] for r in rows if r["test_oracle"]])
    first = rows[0]
    return {
        **{c: None for c in COLUMNS},
        **meta,
        "dataset_seed": first["dataset_seed"],
        "fn": first["fn"],
        "length": first["length"],
        "attempt": None,
        "trial": None,
        "prompt": "",
        "text": "",
        **{c: sum(r[c] for r in rows) for c in TOKEN_COLUMNS},
        "val_acc": val,
        "val_acc_std": val_std,
        "test_acc": test,
        "test_acc_std": test_std,
        "oracle_test_acc": oracle,
        "oracle_test_acc_std": oracle_std,
        "stopped_early": sum(r["stopped_early"] for r in selected),
        "compile_error": "",
        "num_trials": len(trials),
        "is_summary": True,
        "selected": False,
        "test_oracle": False,
        **{c: first[c] for c in EFFECTIVE_COLUMNS},
    }


def grid_rows(db: sqlite_utils.Database, run_id: str) -> list[tuple[list[dict], dict]]:
    """Per grid point in grid order: its attempt rows and its summary row.

    Only finished trials count; a grid point with none yet has no rows.
    """
    run = db["runs"].get(run_id)
    meta = run_metadata(run)
    done = {
        (t["fn"], t["length"], t["trial"])
        for t in db["trials"].rows_where("run_id = ? and status = 'done'", [run_id])
    }
    points: dict[tuple[str, int], list[dict]] = {}
    for r in db.query(ATTEMPT_QUERY, [run_id]):
        if (r["fn"], r["length"], r["trial"]) in done:
            points.setdefault((r["fn"], r["length"]), []).append(attempt_row(meta, r))
    return [(rows, summary_row(meta, rows)) for rows in points.values()]


def write_exports(db: sqlite_utils.Database, run_id: str, paths: ExportPaths) -> dict:
    """Write the JSONL, CSV, per-trial logs and manifest; return the manifest."""
    run = db["runs"].get(run_id)
    grid = grid_rows(db, run_id)
    jsonl, table, logs = [], [], {}
    for rows, summary in grid:
        jsonl.extend(r for r in rows if r["selected"])
        jsonl.append(summary)
        table.extend(rows)
        table.append(summary)
        for r in rows:
            logs.setdefault(paths.trial_log(r["fn"], r["length"], r["trial"]), []).append(r)
    verified = _verification_files(db, run_id, paths)
    for path in {paths.jsonl.parent, paths.csv.parent, paths.manifest.parent}:
        path.mkdir(parents=True, exist_ok=True)
    remove_parts([paths.jsonl, paths.csv, paths.manifest, *logs, *verified])
    manifest = _manifest(db, run, paths, table, sorted(map(str, logs)))
    manifest["artifacts"]["verifications"] = [str(path) for path in verified]
    # All or none (a full disk leaves no export half-written); the manifest comes last.
    write_all_atomic(
        {
            paths.jsonl: _jsonl(jsonl),
            paths.csv: _csv(table),
            **{path: _jsonl(rows) for path, rows in logs.items()},
            **verified,
            paths.manifest: json.dumps(manifest, indent=2) + "\n",
        }
    )
    return manifest


def _verification_files(db: sqlite_utils.Database, run_id: str, paths: ExportPaths) -> dict[Path, str]:
    """The run's verification rows as JSONL and CSV (the keys of `synth verify --json`);
    nothing when it has none."""
    rows = [{k: r[k] for k in JSON_KEYS} for r in verification_rows(db, [run_id])]
    if not rows:
        return {}
    jsonl, table = paths.verifications
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=JSON_KEYS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(
        {**r, "counterexample": json.dumps(r["counterexample"]) if r["counterexample"] else ""} for r in rows
    )
    return {jsonl: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), table: out.getvalue()}


def _jsonl(rows: list[dict]) -> str:
    """One JSON object a line, its keys in the CSV's column order."""
    return "".join(json.dumps({c: r[c] for c in COLUMNS}, ensure_ascii=False) + "\n" for r in rows)


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _manifest(db, run: dict, paths: ExportPaths, table: list[dict], logs: list[str]) -> dict:
    environment = json.loads(run["environment"] or "{}")
    fingerprints = list(
        db.query(
            "select rd.fn, rd.length, d.fingerprint, d.derived_seed, d.train_effective, "
            "d.val_effective, d.test_effective from run_datasets rd "
            "join datasets d on d.id = rd.dataset_id where rd.run_id = ? order by rd.rowid",
            [run["run_id"]],
        )
    )
    summaries = [r for r in table if r["is_summary"]]
    return {
        "run_id": run["run_id"],
        "created_ts": run["created_at"],
        "finished_ts": run["finished_at"],
        "status": run["status"],
        "argv": json.loads(run["argv"] or "[]"),
        "python_executable": environment.get("python_executable"),
        "python_version": environment.get("python_version"),
        "openai_api_key_set": bool(environment.get("openai_api_key_set")),
        "versions": json.loads(run["versions"] or "{}"),
        "config": json.loads(run["config"]),
        # USD of every recorded response, priced when recorded (None: a price unknown).
        "cost_usd": db.execute("select cost_usd from run_costs where run_id = ?", [run["run_id"]]).fetchone()[
            0
        ],
        "prices": json.loads(run["prices"]) if run["prices"] else None,
        "database": environment.get("database"),
        "dataset_fingerprints": fingerprints,
        "artifacts": {
            "jsonl": str(paths.jsonl),
            "csv": str(paths.csv),
            "manifest": str(paths.manifest),
            "trial_logs": logs,
        },
        "row_stats": {
            "total_rows": len(table),
            "summary_rows": len(summaries),
            "attempt_rows": len(table) - len(summaries),
            "compile_error_rows": sum(1 for r in table if r["compile_error"]),
        },
    }

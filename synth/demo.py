"""The demo: a small real grid run end to end, by default with an offline proposer, so
a newcomer sees everything work with no key and no money. `make demo` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reports import build_report
from synth.config import DEMO_DEFAULTS, DEMO_DIR, DEMO_FUNCTIONS, DEMO_LENGTHS, RunConfig
from synth.engine.entry import RunResult, start_run
from synth.engine.preflight import check_folder
from synth.tasks import get_task


@dataclass(frozen=True)
class DemoResult:
    run: RunResult
    out_dir: Path
    db_path: Path
    report: Path
    provider: str


def run_demo(
    out_dir: Path = DEMO_DIR,
    *,
    functions: list[str] | None = None,
    lengths: list[int] | None = None,
    uci_dir: Path | None = None,
    notify=lambda message: None,
    progress_stream=None,
    **settings,
) -> DemoResult:
    """Run the demo grid into ``out_dir``: its database, exports and dataset mirror.

    ``settings`` are further RunConfig settings (the model, the server, concurrency...),
    over DEMO_DEFAULTS; the rest resolve as a run's (RunConfig.resolve)."""
    check_folder(out_dir, "the demo")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / "synth.db"
    if lengths is None and not (functions and all(get_task(fn).fixed_length for fn in functions)):
        lengths = DEMO_LENGTHS  # tabular tasks alone take their length from their data
    config = RunConfig.resolve(
        **{**DEMO_DEFAULTS, **settings},
        functions=functions or DEMO_FUNCTIONS,
        lengths=lengths,
        dataset_dir=str(out_dir / "datasets"),
    )
    config.out_dir = str(out_dir / config.run_id)
    try:
        result = start_run(
            config, db_path=db_path, uci_dir=uci_dir, notify=notify, progress_stream=progress_stream
        )
    except BaseException:
        if created and not any(out_dir.iterdir()):  # refused before anything was written
            out_dir.rmdir()
        raise
    report = build_report(db_path, [result.run_id], out_dir / "report.html")
    return DemoResult(result, out_dir, db_path, report, config.provider)

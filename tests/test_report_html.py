"""build_report: the HTML file (every chart and table, nothing external, escaping), the
text readout, its errors, and reading a database while a run writes to it."""

import fcntl
import json
import os
import re
import sqlite3
import struct
from pathlib import Path

import pytest
import vl_convert
from click.testing import CliRunner
from markupsafe import escape
from openai_server import Reply

from reports import ReportError, build_report
from reports.charts import CHARTS
from reports.html import bundle_file, vega_javascript
from reports.html_tables import table
from reports.tables import Column, fmt
from synth.cli import cli
from tracker.db import open_db

ALL = ["r0", "r1", "r2", "r3", "r4"]
TABLES = [
    "gate",
    "runs",
    "leaderboard",
    "grid-points",
    "seed-spread",
    "leakage",
    "raw-vs-clean",
    "compile",
    "failures",
    "errors",
    "improvement",
    "attempts-to-solve",
    "tokens-runs",
    "tokens-points",
    "programs",
]
# URL-like strings inside the vendored Vega bundle: XML namespace names, which are
# identifiers and never fetched, and strings the page never uses (an issue link in an
# error message, Vega's schema id, the editor link of the actions menu, which is off).
BUNDLE_URLS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/2000/xmlns/",
    "https://github.com/vega/vega-lite/issues/2415",
    "https://vega.github.io/schema/vega/v6.json",
    "https://vega.github.io/editor/",
}


@pytest.fixture(scope="module")
def page(report_db):
    path = build_report(report_db, ALL, report_db.with_name("all.html"))
    return path.read_text(encoding="utf-8")


def specs(html: str) -> dict[str, dict]:
    spec = r'<script type="application/json" class="vl-spec" data-target="chart-([\w-]+)">(.*?)</script>'
    found = re.findall(spec, html, re.S)
    return {id: json.loads(text) for id, text in found}


@pytest.mark.slow
def test_every_chart_is_embedded_with_its_data(page):
    charts = specs(page)
    # Generalisation is drawn only where programs were verified (test_report_browser).
    assert sorted(charts) == sorted(id for id, *_ in CHARTS if id != "generalisation")
    for id, spec in charts.items():
        assert f'id="chart-{id}"' in page
        assert "$schema" not in spec
        assert spec["datasets"]["rows"], id  # inline data, aggregated beforehand
    # a row per dataset with a count above 0 (fn_b's leaks), one for the clean others
    leakage = [r["dataset"] for r in charts["leakage"]["datasets"]["rows"]]
    assert leakage == ["fn_b L4 seed 1", "3 other datasets"]
    heatmap = charts["heatmap"]["datasets"]["rows"]
    assert {(v["proposer"], v["fn"], v["test_mean"]) for v in heatmap} == {
        ("tree", "fn_a", 0.75),
        ("openai/gpt-5", "fn_a", 0.6875),
        ("openai/gpt-5", "fn_b", 0.8125),
    }


def proposer_scales(spec, found=None) -> list[tuple[str, dict]]:
    """Every (channel, scale) of a spec that encodes the proposer."""
    found = [] if found is None else found
    if isinstance(spec, dict):
        for channel, encoding in (spec.get("encoding") or {}).items():
            if isinstance(encoding, dict) and encoding.get("field") == "proposer" and "scale" in encoding:
                found.append((channel, encoding["scale"]))
        for value in spec.values():
            proposer_scales(value, found)
    elif isinstance(spec, list):
        for value in spec:
            proposer_scales(value, found)
    return found


@pytest.mark.slow
def test_one_colour_and_shape_per_proposer_in_every_chart(page):
    scales = {id: proposer_scales(spec) for id, spec in specs(page).items()}
    colours = [s for found in scales.values() for channel, s in found if channel == "color"]
    shapes = [s for found in scales.values() for channel, s in found if channel == "shape"]
    assert len({id for id, found in scales.items() if found}) >= 6  # proposers drawn in most charts
    # one domain, in the order of the runs, for every chart: a proposer keeps its colour
    domain = ["openai/gpt-5", "tree", "openai/llama-3.1-8b"]
    assert colours and all(s["domain"] == domain and s["range"] == colours[0]["range"] for s in colours)
    assert shapes and all(s["domain"] == domain and s["range"] == shapes[0]["range"] for s in shapes)
    assert colours[0]["range"][:2] == ["#0072B2", "#E69F00"]  # colour-blind safe (Okabe-Ito)


@pytest.mark.slow
def test_every_table_is_there_and_sortable(page):
    for name in TABLES:
        assert re.search(rf'<table class="sortable" id="table-{name}">', page), name
    assert page.count('class="sortable"') == len(TABLES)
    grid = page[page.index('id="table-grid-points"') :]
    grid = grid[: grid.index("</table>")]
    assert grid.count("<tr>") == 1 + 5  # the header and five grid points
    assert 'data-v="0.375">0.375</td>' in grid


@pytest.mark.slow
def test_gate_verdict_and_run_metadata_come_first(page):
    gate = page.index('id="gate"')
    assert gate < page.index('id="runs"') < page.index('id="results"')
    assert "research-standard gate: fail" in page[gate : gate + 200]
    assert 'class="gate fail"' in page


@pytest.mark.slow
def test_vega_is_inlined_once_and_nothing_refers_outside(page):
    bundle = vega_javascript()
    assert page.count(bundle) == 1 and len(bundle) > 500_000
    rest = page.replace(bundle, "")
    assert not re.search(r"https?:|ftp:|//[\w.-]+\.\w", rest, re.I)
    assert not re.search(r"\b(src|href)\s*=\s*(?![\"']?#)", rest, re.I)  # only #anchors
    assert "url(" not in rest and "@import" not in rest
    assert set(re.findall(r"https?://[^\s\"'`)]+", bundle)) <= BUNDLE_URLS


@pytest.mark.slow
def test_text_from_the_database_is_escaped(page):
    assert "<b>&amp; stays text</b>" not in page
    assert "&lt;b&gt;&amp;amp; stays text&lt;/b&gt;" in page


def test_the_vega_bundle_is_read_from_the_cache_once_made(tmp_path, monkeypatch):
    """vl-convert's V8 makes the bundle once per version; later reports read the file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kept = bundle_file()
    assert kept.parent == tmp_path / "llm-pv" and vl_convert.__version__ in kept.name
    kept.parent.mkdir()
    kept.write_text("var vegaEmbed = 1; // </script>")
    vega_javascript.cache_clear()
    try:
        assert vega_javascript() == "var vegaEmbed = 1; // <\\/script>"
    finally:
        vega_javascript.cache_clear()


def test_tables_escape_as_jinja_does():
    """The tables are written in Python (reports.html_tables); every value must come out
    as Jinja's autoescape (markupsafe) writes it."""
    texts = ['<b>&amp; it\'s "quoted"</b>', "plain", "", "\u00e9\n\t", 3, 0.1 + 0.2, None, True]
    row = {"v": None}
    for value in texts:
        row["v"] = value
        cell = table("t", [Column("v", "v")], [row]).split("<tbody>")[1]
        want = "" if value is None else escape(value)
        assert f'data-v="{want}">{escape(fmt(value))}</td>' in cell, value


def test_markdown_readout(report_db):
    text = build_report(report_db, ALL, fmt="md")
    assert text.startswith("# LLM-PV report")
    assert "## Research-standard gate: FAIL" in text
    assert "| r1 | fail | 2 | 0.750 | 2 inputs shared between splits; compile-ok rate 0.750 < 0.99 |" in text
    assert "| r1 | fn_a | 4 | 2 | 0.375 | 0.375 | [0.000, 1.000] | 0.500 | +0.125 | 1 |" in text
    assert "4 datasets audited, 1 with inputs shared between splits." in text
    assert "| r3 | tree | 1 | 1 | 0 | 0 | 0 | 0 | $0.0000 |" in text
    assert "| r4 | openai/llama-3.1-8b | 1 | 1 | 100 | 40 | 50 | 30 | unknown |" in text
    # every analysis of the HTML page, without its charts and programs
    assert (
        "| fn_a | 4 | openai/gpt-5 | high | 3 | 2/2/4 | 2 | 4 | 0.688 | 0.410 | [0.000, 1.000] "
        "| 0.750 | +0.062 | 3 |"
    ) in text
    assert "| r1 | openai/gpt-5 | extraction | no_json | 1 |" in text  # failure classes
    assert "| r1 | openai/gpt-5 | fn_a | 4 | 4 | 400 | 160 | 200 | 120 | $0.0023 |" in text  # per point


def test_latest_run_by_default_and_written_atomically(report_db, tmp_path):
    out = build_report(report_db, None, tmp_path / "latest.md", fmt="md")
    assert out == tmp_path / "latest.md"
    text = out.read_text()
    assert "runs: r4" in text and "| r4 | running | openai/llama-3.1-8b |" in text
    assert [p.name for p in tmp_path.iterdir()] == ["latest.md"]


def test_errors_are_report_errors(report_db, tmp_path):
    cases = [
        (dict(db_path=report_db, run_ids=["nope"]), "no run 'nope'"),
        (dict(db_path=tmp_path / "missing.db"), "no database at"),
        (dict(db_path=report_db, fmt="pdf"), "unknown report format 'pdf'"),
        (dict(db_path=report_db, out=tmp_path / "no" / "r.html"), "folder .* does not exist"),
    ]
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t (x)").connection.close()
    cases.append((dict(db_path=other), "is not an LLM-PV database"))
    (tmp_path / "text.db").write_text("not a database at all" * 10)
    cases.append((dict(db_path=tmp_path / "text.db"), "cannot use database"))
    for kwargs, message in cases:
        with pytest.raises(ReportError, match=message):
            build_report(**kwargs)


def test_reads_a_consistent_snapshot_while_a_run_writes(fresh_report_db):
    path = fresh_report_db
    writer = open_db(path)
    writer.conn.execute("begin immediate")  # the runner holds the write lock
    writer.conn.execute(
        "insert into runs (run_id, created_at, status, provider, model, dry_run, config) "
        "values ('r9', '2999-01-01', 'running', 'openai', 'gpt-5', 0, '{}')"
    )
    try:
        text = build_report(path, None, fmt="md")  # not blocked, and sees only committed rows
        assert "runs: r4" in text
    finally:
        writer.conn.commit()
    assert "runs: r9" in build_report(path, None, fmt="md")
    writer.conn.close()


PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'


@pytest.mark.slow
def test_report_of_real_runs(openai_server, tmp_path, monkeypatch):
    """Runs recorded by the runner itself (an OpenAI model and the offline tree)."""
    pytest.importorskip("sklearn", reason="the tree proposer needs scikit-learn")
    from synth.config import RunConfig
    from synth.engine.entry import start_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    openai_server.script = lambda path, body: Reply(text=PARITY)
    grid = dict(
        functions=["fn_a", "fn_g"],
        lengths=[20],
        num_trials=2,
        attempts=2,
        train_size=20,
        val_size=20,
        test_size=40,
    )
    start_run(RunConfig(**grid, run_id="model", api_base_url=openai_server.base_url), db_path="runs.db")
    start_run(RunConfig(**grid, run_id="tree", provider="tree"), db_path="runs.db")
    text = build_report("runs.db", ["model", "tree"], fmt="md")
    assert "## Research-standard gate: PASS" in text
    # tasks by id and name, the name as the stored dataset gives it
    assert (
        "| model | fn_a · parity_all | 20 | 2 | 1.000 | 0.000 | [1.000, 1.000] | 1.000 | +0.000 | 2 |" in text
    )
    assert "2 datasets audited, 0 with inputs shared between splits." in text
    # 6 calls: parity solves fn_a at once, and never fn_g (2 trials x 2 attempts)
    assert (
        f"| model | openai/gpt-5 | 6 | 6 | 720 | 0 | 240 | 96 | ${(720 * 1.25 + 240 * 10) / 1e6:.4f} |"
        in text
    )
    assert "| tree | tree | " in text
    html = build_report("runs.db", ["model", "tree"]).replace(vega_javascript(), "")
    assert 'class="gate pass"' in html and "return x.count(&#34;1&#34;) % 2" in html


@pytest.mark.parametrize(
    "tasks", [["--task", "fn_b"], ["--task", "fn_a,fn_b"], ["--task", "fn_a", "--task", "fn_b"]]
)
def test_report_task_filter_takes_a_list_as_synth_run_does(report_db, tasks):
    result = CliRunner().invoke(cli, ["report", *tasks, "--format", "md", "--db", str(report_db)])
    assert result.exit_code == 0, result.output
    section = result.stdout.split("## Results per grid point")[1].split("## ")[0]
    shown = {line.split(" | ")[1] for line in section.splitlines() if re.match(r"\| r\d ", line)}
    assert shown == {t for arg in tasks[1::2] for t in arg.split(",")}


FS_IMMUTABLE_FL = 0x10


def set_flags(folder: Path, flags: int) -> None:
    """Sets the folder's inode flags (FS_IOC_SETFLAGS); skips where the file system has none."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, 0x40086602, struct.pack("l", flags))
    except OSError as e:
        pytest.skip(f"no inode flags on this file system ({e.strerror})")
    finally:
        os.close(fd)


def listing(folder):
    """Each entry of ``folder``: its type and, for a link, where it points."""
    return {p.name: (os.lstat(p).st_mode, os.path.islink(p) and os.readlink(p)) for p in folder.iterdir()}


@pytest.mark.parametrize(
    "output, make",
    [
        ("", None),  # the current folder: renaming over it failed with "Device or resource busy"
        ("fifo", lambda path: os.mkfifo(path)),
        ("link", lambda path: (os.mkfifo(path.with_name("pipe")), path.symlink_to("pipe"))),
        ("link", lambda path: (path.with_name("file").write_text("kept"), path.symlink_to("file"))),
    ],
    ids=["empty", "pipe", "link-to-pipe", "link-to-file"],
)
def test_the_output_must_be_a_plain_file_or_a_new_path(report_db, tmp_path, monkeypatch, output, make):
    """`-o /dev/stdout` as root replaced the /dev/stdout link with the report: a link, a
    device, a pipe, a folder are refused in one line before any work, left as they were."""
    monkeypatch.chdir(tmp_path)
    if make:
        make(tmp_path / output)
    before = listing(tmp_path)
    result = CliRunner().invoke(cli, ["report", "--db", str(report_db), "-o", output])
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1
    assert re.match(
        r"Error: (cannot write \S*: it is a (folder|named pipe \(FIFO\)|symbolic link \(to a (named pipe \(FIFO\)|file)\)); "
        r"only a plain file is replaced|.*'--output': a path must not be empty)$",
        result.output,
    )
    assert listing(tmp_path) == before


@pytest.mark.slow
def test_a_failed_write_is_one_line_and_leaves_nothing(report_db, tmp_path):
    """The temp file's longer name is too long for the file system: OSError at write."""
    out = tmp_path / ("r" * 245 + ".html")
    result = CliRunner().invoke(cli, ["report", "--db", str(report_db), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: cannot write {out}: File name too long\n"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_we_may_not_write_in_is_refused_up_front(report_db, tmp_path):
    """A PermissionError traceback as a user who may not write there. Root may write
    anywhere but in an immutable folder (chattr +i), so as root the folder is made one:
    wherever the checkout lives, no other user has to reach it."""
    base, ro = tmp_path, tmp_path / "ro"
    ro.mkdir(mode=0o555)
    immutable = os.geteuid() == 0
    if immutable:
        set_flags(ro, FS_IMMUTABLE_FL)
    try:
        result = CliRunner().invoke(cli, ["report", "--db", str(report_db), "-o", str(ro / "r.html")])
    finally:
        if immutable:
            set_flags(ro, 0)
        ro.chmod(0o755)
    code, output = result.exit_code, result.output
    assert os.listdir(ro) == []
    assert code == 2, output
    assert (
        output
        == f"Error: cannot write {base / 'ro' / 'r.html'}: no permission to write in folder {base / 'ro'}\n"
    )

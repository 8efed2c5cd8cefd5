"""The HTML report in headless Chromium: no JavaScript error, no network request, every
chart drawn, tables sortable; a full-page screenshot is kept in test-artifacts/.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3
in, fd 4 out, NUL-separated JSON), stdlib only. Without a browser the test is skipped,
except under CI=true, where a missing browser fails.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from reports import build_report
from reports.charts import CHARTS

pytestmark = pytest.mark.slow  # Chromium


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DEADLINE_S = 60


def browser() -> str:
    found = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if found:
        return found
    message = "no headless browser: install Debian's chromium (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


class DevTools:
    """A browser over --remote-debugging-pipe; events are kept for the test to read."""

    def __init__(self, executable: str, profile: Path):
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        # The pipe ends arrive as stdin and stdout; the shell moves them to fds 3 and 4,
        # where Chromium expects them (no Python code runs between fork and exec).
        wire = 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", wire, "sh", executable, *flags],
            stdin=to_child,
            stdout=from_child,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session = None

    def send(self, method: str, params: dict | None = None, *, browser_level: bool = False) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser_level:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, condition, timeout: float = DEADLINE_S) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the page did not get there in time")
            buffered = b"\0" in self._buffer  # a message already read in with another
            if buffered or select.select([self._in], [], [], 0.2)[0]:
                self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], DEADLINE_S)
            chunk = os.read(self._in, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("the browser stopped answering")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", browser_level=True)
            self.proc.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._in)
            os.close(self._out)


@pytest.fixture(scope="module")
def page(verified_report_db, tmp_path_factory):
    """The report of every fixture run (two of them verified), loaded; yields the driven
    browser."""
    db = verified_report_db
    html = build_report(db, ["r0", "r1", "r2", "r3", "r4"], db.with_name("report.html"))
    yield from _opened(html, tmp_path_factory.mktemp("profile"))


@pytest.fixture(scope="module")
def figures_page(two_proposers_db, tmp_path_factory):
    """The report of two offline proposers on tasks of different lengths, loaded."""
    path, run_ids = two_proposers_db
    html = build_report(path, run_ids, path.with_name("report.html"))
    yield from _opened(html, tmp_path_factory.mktemp("profile"))


def _opened(html: Path, profile: Path):
    """A browser with ``html`` loaded and every chart drawn (or an error shown)."""
    executable = browser()
    tools = DevTools(executable, profile)
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        tools.session = tools.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, browser_level=True
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable")
        tools.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        tools.send("Page.navigate", {"url": html.resolve().as_uri()})
        tools.wait_for(lambda: any(e.get("method") == "Page.loadEventFired" for e in tools.events))
        drawn = "document.querySelectorAll('.chart svg.marks').length"
        boxes = tools.evaluate("document.querySelectorAll('.chart').length")
        tools.wait_for(lambda: tools.evaluate(drawn) == boxes or _errors(tools.events))
        yield tools
    finally:
        tools.close()


def _errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console errors and browser log errors, as text."""
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            out.append(details.get("exception", {}).get("description") or details.get("text"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.append(params["entry"]["text"])
    return out


def test_no_javascript_error_and_every_chart_drawn(page):
    assert _errors(page.events) == []
    ids = page.evaluate(
        "[...document.querySelectorAll('.chart')].filter(c => c.querySelector('svg.marks')).map(c => c.id)"
    )
    assert sorted(ids) == sorted(f"chart-{id}" for id, *_ in CHARTS)


def test_no_request_leaves_the_file(page):
    urls = [
        e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert urls and all(u.startswith(("file://", "data:", "about:")) for u in urls), urls


def test_tables_sort_on_click(page):
    column = "[...document.querySelectorAll('#table-grid-points tbody tr')].map(r => r.cells[6].dataset.v)"
    header = "document.querySelectorAll('#table-grid-points th')[6]"
    page.evaluate(f"{header}.click()")
    ascending = page.evaluate(column)
    page.evaluate(f"{header}.click()")
    descending = page.evaluate(column)
    values = [float(v) for v in ascending]
    assert values == sorted(values) and len(set(values)) > 1
    assert [float(v) for v in descending] == sorted(values, reverse=True)


def test_selected_programs_open(page):
    page.evaluate("document.querySelector('#table-programs details').open = true")
    code = page.evaluate("document.querySelector('#table-programs details pre').innerText")
    assert code.startswith("def f(x):") and "<b>&amp; stays text</b>" in code


def test_generalisation_section(page):
    assert page.evaluate("document.querySelector('nav a[href=\"#generalisation\"]') !== null")
    cells = page.evaluate(
        "[...document.querySelectorAll('#chart-generalisation svg.marks text')].map(t => t.textContent)"
    )
    assert "fn_b (extended)" in cells, cells
    rows = "[...document.querySelectorAll('#table-recovery tbody tr')].map(r => r.innerText.split('\\t'))"
    assert [r[:2] for r in page.evaluate(rows)] == [
        ["fn_a", "openai/gpt-5"],
        ["fn_a", "tree"],
        ["fn_b", "openai/gpt-5"],
    ]
    visible = "document.querySelector('#table-counterexamples').checkVisibility()"
    assert page.evaluate(visible) is False, "the counterexamples start collapsed"
    page.evaluate("document.querySelector('#counterexamples').open = true")
    assert page.evaluate(visible) is True
    first = page.evaluate("document.querySelector('#table-counterexamples tbody tr').innerText")
    assert "0001" in first


def test_screenshot_saved(page):
    path = _screenshot(page, "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000


def _screenshot(page, name: str) -> Path:
    """A full-page screenshot, kept in test-artifacts/; returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.send("Page.getLayoutMetrics")["cssContentSize"]["height"]
    shot = page.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": min(height, 12000), "scale": 1},
        },
    )
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# Each row's box, and whether an ancestor box cuts it off (an element that scrolls or
# hides its overflow, and is shorter than its content).
ROW_BOXES = """
[...document.querySelectorAll('#table-leaderboard tbody tr')].map(row => {
  const box = row.getBoundingClientRect();
  let clipped = false;
  for (let e = row.parentElement; e; e = e.parentElement) {
    const o = getComputedStyle(e).overflowY;
    if (o !== 'visible' && e.scrollHeight > e.clientHeight + 1) clipped = true;
  }
  return {top: box.top + scrollY, bottom: box.bottom + scrollY, height: box.height, clipped};
})
"""


def test_every_leaderboard_row_is_in_a_full_page_screenshot(figures_page):
    assert _errors(figures_page.events) == []
    rows = figures_page.evaluate(ROW_BOXES)
    height = figures_page.send("Page.getLayoutMetrics")["cssContentSize"]["height"]
    assert len(rows) == 6  # 2 proposers x (fn_a at 2 lengths + fn_e at 1)
    assert all(r["height"] > 0 and not r["clipped"] and r["bottom"] <= height for r in rows), rows
    assert _screenshot(figures_page, "report-two-proposers.png").stat().st_size > 50_000


# What each length axis of a chart says it shows (Vega writes an axis's description as
# its aria-label): one axis per panel when each panel has a scale of its own.
AXES = "[...document.querySelectorAll('#chart-ID g[aria-label^=\"X-axis\"]')].map(a => a.getAttribute('aria-label'))"


def test_each_task_panel_holds_only_its_lengths_on_a_numeric_axis(figures_page):
    spec = json.loads(
        figures_page.evaluate(
            "document.querySelector('script.vl-spec[data-target=\"chart-accuracy-by-length\"]').textContent"
        )
    )
    assert spec["resolve"]["scale"]["x"] == "independent"
    layers = spec["spec"]["layer"]
    assert {layer["mark"]["type"] for layer in layers} >= {"line", "area", "point"}
    assert all(layer["encoding"]["x"]["type"] == "quantitative" for layer in layers)
    assert {r["task"] for r in spec["datasets"]["rows"]} == {"fn_a · parity_all", "fn_e · parity_rand_3"}
    axes = sorted(figures_page.evaluate(AXES.replace("ID", "accuracy-by-length")))
    assert len(axes) == 2 and axes[0].endswith("values from 12 to 20") and axes[1].endswith("from 8 to 8"), (
        axes
    )


def test_every_chart_has_an_svg_and_png_export(figures_page):
    menus = figures_page.evaluate(
        "[...document.querySelectorAll('.chart')].map(c => "
        "[...c.querySelectorAll('.vega-actions a')].map(a => a.textContent.trim()))"
    )
    assert len(menus) == len(CHARTS) - 1  # no generalisation chart: nothing was verified
    assert all({"Save as SVG", "Save as PNG"} <= set(menu) for menu in menus), menus
    assert not any("Open in Vega Editor" in menu or "View Source" in menu for menu in menus)


def test_leakage_colours_only_what_crosses_splits(page):
    fills = page.evaluate(
        "[...document.querySelectorAll('#chart-leakage g.mark-rect path')].map(p => p.getAttribute('fill'))"
    )
    # B1 shares 0101 between train and val (input and line) and 0110 between train and
    # test: three cells across splits; its doubled test input is a duplicate within a split
    assert fills.count("#d55e00") == 3 and fills.count("#c6dbef") == 1, fills
    assert len(fills) == 2 * 9  # B1's row, and one row for the three datasets with no count

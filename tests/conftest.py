"""Shared fixtures. Tests use real SQLite files in tmp dirs and a real loopback HTTP server."""

import os
import time
from pathlib import Path

import pytest

pytest_plugins = ["openai_server", "report_fixtures", "study_fixtures"]

SHARED = Path(__file__).resolve().parents[2] / "shared"
UCI_DIR = Path(os.environ.get("SYNTH_TEST_UCI_DIR", SHARED / "uci"))


@pytest.fixture(scope="session")
def uci_dir():
    """The offline UCI copies beside the checkout (../shared/uci); skip when absent."""
    if not (UCI_DIR / "adult.data.gz").exists():
        pytest.skip(f"UCI offline copies not found at {UCI_DIR} (set SYNTH_TEST_UCI_DIR)")
    return UCI_DIR


@pytest.fixture
def wait_until():
    """Polls a condition to a deadline (never a fixed sleep); whether it came true."""

    def wait(condition, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    return wait


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder for the CLI, made the current one: no SYNTH_DB or
    OPENAI_API_KEY from the caller, a dataset cache of its own, and no UCI download
    leaves (the source URL points where nothing listens). Modules that need more
    (a key, files) override it, asking for this one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNTH_DB", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def data():
    """Datasets as `synth run` builds them (100/100/1000, seed 42), built once per module:
    ``data(fn, length, uci_dir=None)``."""
    from synth.datasets.grid import Sizes, plan_grid
    from synth.datasets.splits import build_dataset

    built = {}

    def get(fn, length, uci_dir=None):
        if (fn, length) not in built:
            point = plan_grid([fn], [length], Sizes(100, 100, 1000), 42, uci_dir=uci_dir)[0]
            built[fn, length] = build_dataset(point, uci_dir=uci_dir)
        return built[fn, length]

    return get

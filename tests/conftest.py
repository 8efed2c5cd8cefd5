"""Shared fixtures. Tests use real SQLite files in tmp dirs and a real loopback HTTP server."""

import os
from pathlib import Path

import pytest

pytest_plugins = ["openai_server", "report_fixtures"]

SHARED = Path(__file__).resolve().parents[2] / "shared"
UCI_DIR = Path(os.environ.get("SYNTH_TEST_UCI_DIR", SHARED / "uci"))


@pytest.fixture(scope="session")
def uci_dir():
    """The offline UCI copies beside the checkout (../shared/uci); skip when absent."""
    if not (UCI_DIR / "adult.data.gz").exists():
        pytest.skip(f"UCI offline copies not found at {UCI_DIR} (set SYNTH_TEST_UCI_DIR)")
    return UCI_DIR

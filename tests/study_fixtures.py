"""A study of two systems against two loopback servers with different keys and
behaviours (the real openai SDK over HTTP), for the study tests. Loaded by
tests/conftest.py."""

import pytest
import yaml
from helpers import run_cli
from openai_server import OpenAIServer, Reply

KEY_GOOD, KEY_WEAK = "sk-GOOD-3f9a1c77e2", "sk-WEAK-8b0d2e5a41"
PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'
ZERO = '{"code": "def f(x):\\n    return 0"}'


@pytest.fixture
def servers():
    """Two endpoints: one answers parity (right on fn_a), one a constant (chance)."""
    with (
        OpenAIServer(lambda path, body: Reply(PARITY)) as good,
        OpenAIServer(lambda p, b: Reply(ZERO)) as weak,
    ):
        yield good, weak


@pytest.fixture
def study_env(workdir, monkeypatch):
    monkeypatch.setenv("KEY_GOOD", KEY_GOOD)
    monkeypatch.setenv("KEY_WEAK", KEY_WEAK)
    return workdir


def study_file(folder, servers, **over) -> dict:
    good, weak = servers
    spec = {
        "name": "duel",
        "functions": ["fn_a"],
        "lengths": [20],
        "num_trials": 2,
        "attempts": 2,
        "train_size": 10,
        "val_size": 10,
        "test_size": 20,
        "seeds": [1, 2],
        "prompts": ["default", "paraphrase-1"],
        "max_retries": 0,
        "systems": [
            {"name": "good", "model": "m-good", "api_base_url": good.base_url, "api_key_env": "KEY_GOOD"},
            {
                "name": "weak",
                "model": "m-weak",
                "api_mode": "chat",
                "api_base_url": weak.base_url,
                "api_key_env": "KEY_WEAK",
                "concurrency": 2,
            },
        ],
        **over,
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec


@pytest.fixture
def duel_db(study_env, servers):
    study_file(study_env, servers)
    assert run_cli("study", "run", "study.yaml", "--db", "s.db").exit_code == 0
    return study_env / "s.db"

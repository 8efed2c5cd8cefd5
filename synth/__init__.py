"""LLM-PV: propose-and-verify program learning experiments, recorded in SQLite."""

__version__ = "0.1.0"

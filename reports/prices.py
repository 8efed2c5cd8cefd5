"""Token prices as data: the package's table of OpenAI models, merged with the user's.

A user file (the ``prices`` argument, else ``$SYNTH_PRICES``) has the package file's
shape; its models replace or extend the package's. A model in neither has no price,
and the cost of its tokens is unknown (``None``), never guessed.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from reports.errors import ReportError
from tracker.files import read_plain

PRICES_ENV = "SYNTH_PRICES"
MAX_TABLE_BYTES = 1 << 20  # a price table is a few KiB
PER_TOKENS = 1_000_000
# A dated snapshot ("gpt-5-2025-08-07") costs what its model does.
SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PriceTable:
    models: dict[str, dict[str, float]]
    as_of: str
    source: str  # "package", or the user file merged over it

    def price(self, model: str | None) -> dict[str, float] | None:
        if model is None:
            return None
        return self.models.get(model) or self.models.get(SNAPSHOT.sub("", model))

    def cost(self, model: str | None, input_tokens: int, cached_tokens: int, output_tokens: int):
        """USD for these tokens; cached input tokens are part of ``input_tokens``. No
        tokens cost nothing, priced or not (offline proposers, dry runs)."""
        p = self.price(model)
        if p is None:
            return 0.0 if input_tokens == output_tokens == 0 else None
        cached_price = p.get("cached_input", p["input"])
        return (
            (input_tokens - cached_tokens) * p["input"]
            + cached_tokens * cached_price
            + output_tokens * p["output"]
        ) / PER_TOKENS


def load_prices(path: str | os.PathLike | None = None) -> PriceTable:
    """The package table, with the user's file (argument, else $SYNTH_PRICES) merged over it."""
    base = json.loads(files("reports").joinpath("data/prices.json").read_text(encoding="utf-8"))
    models, as_of, source = dict(base["models"]), base["as_of"], "package"
    path = path or os.environ.get(PRICES_ENV)
    if path:
        user = _read_user_table(Path(path))
        models.update(user["models"])
        as_of, source = user.get("as_of", as_of), f"{path} over the package table"
    return PriceTable(models, as_of, source)


def _read_user_table(path: Path) -> dict:
    try:
        data = json.loads(read_plain(path, MAX_TABLE_BYTES).decode("utf-8"))
    except OSError as e:
        raise ReportError(f"cannot read price table {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ReportError(f"price table {path} is not valid JSON: {e}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ReportError(
            f'price table {path} needs a "models" object: {{"model": {{"input": ..., "output": ...}}}}'
        )
    for model, p in models.items():
        numbers = isinstance(p, dict) and all(
            isinstance(v, int | float) and 0 <= v < math.inf for v in p.values()
        )  # 1e400 reads as inf: finite only
        if not numbers or not {"input", "output"} <= p.keys():
            raise ReportError(
                f"price table {path}: model {model!r} needs non-negative numbers "
                '"input" and "output" (and optionally "cached_input"), '
                "USD per 1M tokens, finite"
            )
    return data

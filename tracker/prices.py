"""Token prices as data: the package's table of OpenAI models, merged with the user's.

A user file (the ``prices`` argument, else ``$SYNTH_PRICES``) has the package file's
shape; its models replace or extend the package's. A model in neither has no price,
and the cost of its tokens is unknown (``None``), never guessed. A run stores the price
of its model (``ModelPrice``) and prices each response with it when it is recorded.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

from tracker.files import read_plain

PRICES_ENV = "SYNTH_PRICES"
MAX_TABLE_BYTES = 1 << 20  # a price table is a few KiB
PER_TOKENS = 1_000_000
# The Batch API bills half the standard price, input and output.
BATCH_DISCOUNT = 0.5
# A dated snapshot ("gpt-5-2025-08-07") costs what its model does.
SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class PriceError(Exception):
    """A price table that cannot be read or is not the table's shape (one line)."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices (USD per 1M tokens; None: unknown) and the table they came
    from: what a run stores, so later changes to any table leave its costs alone."""

    model: str
    price: dict[str, float] | None
    as_of: str
    source: str
    source_url: str | None = None

    def costs(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> dict:
        """The cost of one response, by part and in all (USD); cached input tokens are
        part of ``input_tokens``, reasoning tokens of ``output_tokens``. None where the
        price is unknown; no tokens cost nothing, priced or not (offline proposers)."""
        names = ("input_cost_usd", "cached_input_cost_usd", "output_cost_usd")
        p = self.price
        if p is None:
            known = input_tokens == output_tokens == 0
            return dict.fromkeys((*names, "cost_usd"), 0.0 if known else None)
        parts = [
            (input_tokens - cached_tokens) * p["input"] / PER_TOKENS,
            cached_tokens * p.get("cached_input", p["input"]) / PER_TOKENS,
            output_tokens * p["output"] / PER_TOKENS,
        ]
        return {**dict(zip(names, parts, strict=True)), "cost_usd": sum(parts)}

    def worst_case(self, input_tokens: int, output_tokens: int) -> float:
        """The most a call of these many tokens can cost (no input cached); needs a price."""
        return (input_tokens * self.price["input"] + output_tokens * self.price["output"]) / PER_TOKENS

    def batch(self) -> ModelPrice:
        """This price at the Batch API's discount (every part): what a --batch run pays."""
        price = None if self.price is None else {k: v * BATCH_DISCOUNT for k, v in self.price.items()}
        return ModelPrice(
            self.model, price, self.as_of, f"{self.source}, at Batch API prices", self.source_url
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ModelPrice:
        return cls(**data)


@dataclass(frozen=True)
class PriceTable:
    models: dict[str, dict[str, float]]
    as_of: str
    source: str  # "package", or the user file merged over it
    source_url: str | None = None

    def price(self, model: str | None) -> dict[str, float] | None:
        if model is None:
            return None
        return self.models.get(model) or self.models.get(SNAPSHOT.sub("", model))

    def for_model(self, model: str) -> ModelPrice:
        return ModelPrice(model, self.price(model), self.as_of, self.source, self.source_url)

    def cost(self, model: str | None, input_tokens: int, cached_tokens: int, output_tokens: int):
        """USD for these tokens at this table (None: the model has no price)."""
        return self.for_model(model).costs(input_tokens, cached_tokens, output_tokens)["cost_usd"]


def load_prices(path: str | os.PathLike | None = None) -> PriceTable:
    """The package table, with the user's file (argument, else $SYNTH_PRICES) merged over it."""
    base = json.loads(files("tracker").joinpath("data/prices.json").read_text(encoding="utf-8"))
    models, as_of, source, url = dict(base["models"]), base["as_of"], "package", base.get("source_url")
    path = path or os.environ.get(PRICES_ENV)
    if path:
        user = _read_user_table(Path(path))
        models.update(user["models"])
        as_of, source = user.get("as_of", as_of), f"{path} over the package table"
        url = user.get("source_url", url)
    return PriceTable(models, str(as_of), source, url)


def _read_user_table(path: Path) -> dict:
    try:
        data = json.loads(read_plain(path, MAX_TABLE_BYTES).decode("utf-8"))
    except OSError as e:
        raise PriceError(f"cannot read price table {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise PriceError(f"price table {path} is not valid JSON: {e}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise PriceError(
            f'price table {path} needs a "models" object: {{"model": {{"input": ..., "output": ...}}}}'
        )
    for model, p in models.items():
        numbers = isinstance(p, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf for v in p.values()
        )  # 1e400 reads as inf: finite only
        if not numbers or not {"input", "output"} <= p.keys():
            raise PriceError(
                f"price table {path}: model {model!r} needs non-negative numbers "
                '"input" and "output" (and optionally "cached_input"), '
                "USD per 1M tokens, finite"
            )
    return data

"""What a grid will cost, before any call (`synth run --dry-run`): per grid point and in
all, the calls it makes at least (every trial solved at its first attempt) and at most
(every attempt made), their tokens and dollars at the run's prices, standard and Batch.

Input tokens come from the rendered prompts (synth.engine.budget.input_tokens: exact
where a call of the same prompt and model was recorded); output tokens are 0 at least
and --max-output-tokens a call at most, so the real spend of the grid lies in between.
"""

from __future__ import annotations

from synth.config import RunConfig
from synth.engine.budget import input_tokens
from tracker.prices import BATCH_DISCOUNT, ModelPrice


def estimate(
    config: RunConfig, jobs: dict, price: ModelPrice, recorded: dict[str, int], trials: dict | None = None
) -> list[dict]:
    """One row per grid point, then a total row (fn "total"); dollars None when the
    model has no price. ``trials``: the run's trials per grid point, where they are not
    --num-trials each (a shard's); a point with none has no row."""
    rows = []
    for (fn, length), job in jobs.items():
        low, high = input_tokens(job.prompt, recorded.get(job.prompt_hash))
        n = config.num_trials if trials is None else trials.get((fn, length), 0)
        if not n:
            continue
        calls = (n, n * config.attempts)
        rows.append(
            {
                "fn": fn,
                "length": length,
                "calls_min": calls[0],
                "calls_max": calls[1],
                "input_tokens_min": calls[0] * low,
                "input_tokens_max": calls[1] * high,
                "output_tokens_min": 0,
                "output_tokens_max": calls[1] * config.max_output_tokens,
            }
        )
    total = {"fn": "total", "length": None}
    for key in rows[0] if rows else ():
        if key not in total:
            total[key] = sum(r[key] for r in rows)
    return [_priced(r, price, config.batch) for r in (*rows, total)]


def _priced(row: dict, price: ModelPrice, batch: bool) -> dict:
    """``batch``: ``price`` is a --batch run's, at Batch prices already."""
    standard, discounted = (1 / BATCH_DISCOUNT, 1) if batch else (1, BATCH_DISCOUNT)
    for end in ("min", "max"):
        usd = price.costs(row[f"input_tokens_{end}"], 0, row[f"output_tokens_{end}"])["cost_usd"]
        row[f"usd_{end}"] = None if usd is None else usd * standard
        row[f"batch_usd_{end}"] = None if usd is None else usd * discounted
    return row

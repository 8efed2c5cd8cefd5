"""--max-cost: a hard cap on what a run spends, kept by reserving each call's worst case.

Before a call starts, the most it can cost is reserved against what is left of the cap:
its input tokens, estimated from above (calibrated by the input tokens recorded for the
same prompt and model), plus --max-output-tokens, at the run's prices, none of the input
cached. A call that cannot be afforded does not start, nor any after it; calls in flight
finish, are recorded, and settle at what they cost. So recorded spend never exceeds the
cap (docs/cost.md says where that guarantee ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.prices import ModelPrice

# The message framing around the prompt's text (role markers), in tokens, at most.
FRAMING_TOKENS = 16
# A tokenizer's token is at least one byte of text: no more tokens than bytes. The least
# it can be is a guess: no English or digit text averages 8 bytes a token.
MOST_BYTES_PER_TOKEN = 8


def input_tokens(prompt: str, recorded: int | None = None) -> tuple[int, int]:
    """The input tokens of one call of ``prompt``, (at least, at most): what a call of the
    same prompt and model recorded, when one did; else bounds from its UTF-8 length."""
    if recorded is not None:
        return recorded, recorded
    size = len(prompt.encode("utf-8", "surrogatepass"))
    return size // MOST_BYTES_PER_TOKEN, size + FRAMING_TOKENS


@dataclass
class Pool:
    """A cap shared by several runs (a whole study's): what they spent and reserved."""

    cap: float
    spent: float = 0.0
    reserved: float = 0.0


@dataclass
class Budget:
    """What a run has spent and reserved against its cap (None: no cap, spend is counted),
    and against a ``pool`` it shares with other runs."""

    cap: float | None
    price: ModelPrice
    max_output_tokens: int
    spent: float | None = 0.0  # None once a response's cost is unknown
    recorded_inputs: dict[str, int] = field(default_factory=dict)  # prompt hash -> input tokens
    reserved: float = 0.0
    refused: float | None = None  # the worst case of the first call refused
    pool: Pool | None = None

    @property
    def exhausted(self) -> bool:
        return self.refused is not None

    def worst_case(self, prompt_hash: str, prompt: str) -> float:
        _, most = input_tokens(prompt, self.recorded_inputs.get(prompt_hash))
        return self.price.worst_case(most, self.max_output_tokens)

    def reserve(self, prompt_hash: str, prompt: str) -> float | None:
        """The amount reserved for one call, or None when it cannot be afforded (then no
        later call is: the run ends once those in flight are recorded)."""
        if self.cap is None and self.pool is None:
            return 0.0
        worst = self.worst_case(prompt_hash, prompt)
        over_own = self.cap is not None and self.spent + self.reserved + worst > self.cap
        pool = self.pool
        over_pool = pool is not None and pool.spent + pool.reserved + worst > pool.cap
        if self.exhausted or over_own or over_pool:
            self.refused = self.refused or worst
            return None
        self.reserved += worst
        if pool is not None:
            pool.reserved += worst
        return worst

    def settle(self, reserved: float, cost: float | None, prompt_hash: str, input_tokens: int | None) -> None:
        """A call ended: its reservation is released and what it cost (None: unknown) spent."""
        self.reserved -= reserved
        if self.spent is not None:
            self.spent = None if cost is None else self.spent + cost
        if self.pool is not None:
            self.pool.reserved -= reserved
            self.pool.spent += cost or 0.0  # a pooled run's price is known: checked up front
        if input_tokens:
            self.recorded_inputs[prompt_hash] = max(input_tokens, self.recorded_inputs.get(prompt_hash, 0))

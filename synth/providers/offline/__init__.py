"""Offline program proposers: classical baselines that need no key and no network.

They answer a ProposeRequest like a model does, with ``{"code": ...}`` text, so their
programs go through the same extraction, sandbox, recording, selection and exports.
See docs/baselines.md.
"""

from __future__ import annotations

import inspect
from functools import partial

from synth.config import OFFLINE_PROVIDERS
from synth.providers.base import Provider, ProviderError
from synth.providers.offline import formula, learners, tree
from synth.providers.offline.base import OfflineProvider


class TreeProvider(OfflineProvider):
    """A CART decision tree as nested if/else. Options: max_depth, min_samples_leaf."""

    name = "tree"
    fit = staticmethod(tree.fit)

    def __init__(self, **options):
        tree.classifier()  # fail now, with the install hint, not at the first attempt
        super().__init__(**options)


class FormulaProvider(OfflineProvider):
    """The shortest boolean formula fitting the training split. Options: max_candidates
    (the budget), time_budget (a safety cap), max_size, max_thresholds."""

    name = "formula"
    fit = staticmethod(formula.fit)


class LearnerProvider(OfflineProvider):
    """A classical learner of learners.py, its settings chosen on the validation split."""

    selects_on_val = True

    def __init__(self, **options):
        learners.sklearn()  # fail now, with the install hint, not at the first attempt
        super().__init__(**options)


def _learner(name: str) -> type[LearnerProvider]:
    return type(
        f"{name.title()}Provider",
        (LearnerProvider,),
        {"name": name, "fit": staticmethod(partial(learners.fit, name))},
    )


PROVIDERS = {"tree": TreeProvider, "formula": FormulaProvider, **{n: _learner(n) for n in learners.LEARNERS}}


def setting_of(name: str, options: dict) -> str:
    """What proposer ``name`` with ``options`` is set to, in one line (recorded with a run)."""
    if name in learners.LEARNERS:
        return learners.setting(name)
    defaults = {
        p.name: p.default
        for p in inspect.signature(PROVIDERS[name].fit).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    return ", ".join(f"{k}={v}" for k, v in {**defaults, **options}.items())


def make_offline_provider(name: str, **options) -> Provider:
    """The offline proposer called ``name``, with its options (see each class)."""
    if name not in PROVIDERS:
        raise ProviderError(
            f"unknown offline proposer {name!r} (known: {', '.join(OFFLINE_PROVIDERS)})",
            kind="config",
            fatal=True,
        )
    return PROVIDERS[name](**options)


__all__ = ["OFFLINE_PROVIDERS", "FormulaProvider", "LearnerProvider", "TreeProvider", "make_offline_provider"]

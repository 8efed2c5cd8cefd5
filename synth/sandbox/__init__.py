"""The sandbox that runs model-written programs: the runner's side (evaluation) and the
fork server it talks to (zygote, run as a script in its own process)."""

from synth.sandbox.evaluation import STATUSES, Evaluation, evaluate, evaluate_async

__all__ = ["STATUSES", "Evaluation", "evaluate", "evaluate_async"]

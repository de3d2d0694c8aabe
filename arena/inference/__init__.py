"""Inference with trained checkpoints: batching, swap TTA, ensembles and submission files.

predictor = Predictor.from_checkpoint(run_dir, cache_dir=Path(".cache/arena"))
probs = predictor.predict(table, TTA("full"))                          # (n, C)
out = Ensemble([p0, p1], weights=[2, 1], combine="logit").predict(table, TTA("uncertain"))
replies = respond(load_generator("<model dir>"), [["Hi!"]], Sampling(max_new_tokens=64))
"""

from arena.inference.ensemble import TTA, Ensemble, Prediction, combine, select_rows
from arena.inference.generation import Sampling, load_generator, read_prompts, respond
from arena.inference.predictor import Encoded, Predictor, assemble

__all__ = [
    "TTA",
    "Encoded",
    "Ensemble",
    "Prediction",
    "Predictor",
    "Sampling",
    "assemble",
    "combine",
    "load_generator",
    "read_prompts",
    "respond",
    "select_rows",
]

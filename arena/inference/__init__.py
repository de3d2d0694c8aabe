"""Inference with trained checkpoints: batching, swap TTA, ensembles and submission files.

predictor = Predictor.from_checkpoint(run_dir, cache_dir=Path(".cache/arena"))
probs = predictor.predict(table)                                       # (n, C), as given
ensemble = Ensemble.from_checkpoints([run0, run1], [2, 1], "logit", cache_dir=c, device=d)
out = ensemble.predict(table, TTA("uncertain"))                        # out.probs (n, C)

Generating responses (``arena.inference.generation``: ``load_generator``, ``respond``) loads
causal LMs; it is imported from its module, not here, so that scoring starts fast.
"""

from arena.inference.ensemble import TTA, Ensemble, Prediction, combine, select_rows
from arena.inference.predictor import Encoded, Predictor, assemble

__all__ = [
    "TTA",
    "Encoded",
    "Ensemble",
    "Prediction",
    "Predictor",
    "assemble",
    "combine",
    "select_rows",
]

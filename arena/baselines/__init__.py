"""Non-neural baselines scored on the training runs' folds (``python -m arena.baselines``)."""

from arena.baselines.models import (
    LengthBaseline,
    PairBaseline,
    TfidfBaseline,
    longer_wins_accuracy,
)

__all__ = ["LengthBaseline", "PairBaseline", "TfidfBaseline", "longer_wins_accuracy"]

"""Data layer: readers, schema, swap, folds, formatting, tokenization, batching (no Lightning)."""

from arena.data.correction import LabelCorrection
from arena.data.format import Budget, Formatter, Template
from arena.data.teachers import Teacher

__all__ = ["Budget", "Formatter", "LabelCorrection", "Teacher", "Template"]

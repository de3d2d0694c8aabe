"""Data layer: readers, schema, swap, folds, formatting, tokenization, batching, datamodule."""

from arena.data.format import Budget, Formatter, Template
from arena.data.teachers import Teacher

__all__ = ["Budget", "Formatter", "PreferenceDataModule", "Teacher", "Template"]


def __getattr__(name: str):  # the DataModule imports Lightning: load it only when asked for
    if name == "PreferenceDataModule":
        from arena.data.datamodule import PreferenceDataModule

        return PreferenceDataModule
    raise AttributeError(name)

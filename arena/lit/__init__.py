"""Lightning: the reward classifier, the multi-teacher distillation student and the DataModule
that feeds them."""

from arena.lit.classifier import ClassifierModule
from arena.lit.datamodule import PreferenceDataModule
from arena.lit.distill import DistillModule

__all__ = ["ClassifierModule", "DistillModule", "PreferenceDataModule"]

"""LightningModules: the reward classifier and the multi-teacher distillation student."""

from arena.lit.classifier import ClassifierModule
from arena.lit.distill import DistillModule

__all__ = ["ClassifierModule", "DistillModule"]

"""Callbacks for cross-cutting concerns: OOF writing, throughput, stopping on a signal."""

from arena.callbacks.interrupt import GracefulStop, TrainingInterrupted
from arena.callbacks.oof import OOFWriter
from arena.callbacks.throughput import Throughput

__all__ = ["GracefulStop", "OOFWriter", "Throughput", "TrainingInterrupted"]

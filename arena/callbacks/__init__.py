"""Callbacks for cross-cutting concerns: OOF writing, throughput, stopping on a signal, the
parameter summary."""

from arena.callbacks.interrupt import GracefulStop, TrainingInterrupted
from arena.callbacks.oof import OOFWriter
from arena.callbacks.summary import ParameterSummary
from arena.callbacks.throughput import Throughput

__all__ = ["GracefulStop", "OOFWriter", "ParameterSummary", "Throughput", "TrainingInterrupted"]

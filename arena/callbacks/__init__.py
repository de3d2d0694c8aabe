"""Callbacks for cross-cutting concerns: OOF writing, throughput."""

from arena.callbacks.oof import OOFWriter
from arena.callbacks.throughput import Throughput

__all__ = ["OOFWriter", "Throughput"]

"""Sharding helpers used by the LightningModules under ``trainer=fsdp``, and device setup for the
inference commands."""

from arena.distributed.device import init_distributed, resolve_device
from arena.distributed.fsdp import full_trainable_state, shard_model
from arena.distributed.strategy import FSDPStrategy

__all__ = [
    "FSDPStrategy",
    "full_trainable_state",
    "init_distributed",
    "resolve_device",
    "shard_model",
]

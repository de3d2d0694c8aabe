"""Sharding helpers used by the LightningModules under ``trainer=fsdp``."""

from arena.distributed.fsdp import full_trainable_state, shard_model
from arena.distributed.strategy import FSDPStrategy

__all__ = ["FSDPStrategy", "full_trainable_state", "shard_model"]

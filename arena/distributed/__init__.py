"""Sharding helpers used by the LightningModules under ``trainer=fsdp``."""

from arena.distributed.fsdp import shard_model

__all__ = ["shard_model"]

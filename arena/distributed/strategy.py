"""``trainer=fsdp``: Lightning's ModelParallelStrategy with every process on the data-parallel axis.

ModelParallelStrategy's ``"auto"`` puts the nodes on the data-parallel axis and the GPUs of a node
on the tensor-parallel one; FSDP alone (no tensor parallelism) wants all ``num_nodes x devices``
processes on one data-parallel mesh. The LightningModule shards each decoder layer in
``configure_model`` (see :func:`arena.distributed.shard_model`).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy


class FSDPStrategy(ModelParallelStrategy):
    """FSDP2 (``fully_shard``) over every process; runs on CPU with gloo too.

    Args:
        **kwargs: ModelParallelStrategy's other arguments (``save_distributed_checkpoint``,
            ``process_group_backend``, ``timeout``).
    """

    def __init__(self, **kwargs: Any):
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

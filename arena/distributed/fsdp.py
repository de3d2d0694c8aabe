"""FSDP2 sharding of a :class:`arena.models.PreferenceModel`: one ``fully_shard`` unit per decoder
layer (its class named by the backbone YAML's ``decoder_layer``), then the root.

4-bit weights shard only when stored in a float dtype (``bnb_4bit_quant_storage`` = compute dtype,
the bitsandbytes FSDP-QLoRA route); with the default uint8 storage FSDP2 crashes or trains silently
wrong (accelerate issue #3983; axolotl PR #2992), so that combination is refused here with a clear
error.
"""

from __future__ import annotations

from typing import cast

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from arena.models import trainable_state_dict


def _check_quant_storage(model: torch.nn.Module) -> None:
    for name, param in model.named_parameters():
        if type(param).__name__ == "Params4bit" and not param.dtype.is_floating_point:
            raise ValueError(
                f"cannot shard 4-bit weight {name} stored as {param.dtype}: set "
                "model.model_factory.quant_storage to the compute dtype (e.g. bfloat16) for "
                "FSDP-QLoRA, or train it with trainer=ddp"
            )


def shard_model(model: torch.nn.Module, mesh: DeviceMesh, layer_class: str) -> torch.nn.Module:
    """Apply ``fully_shard`` to every ``layer_class`` module, then to ``model`` itself.

    Args:
        model: the model to shard in place.
        mesh: the data-parallel device mesh.
        layer_class: class name of the decoder layer, e.g. ``"Gemma2DecoderLayer"``.

    Returns:
        ``model``, now sharded.
    """
    _check_quant_storage(model)
    layers = [m for m in model.modules() if type(m).__name__ == layer_class]
    if not layers:
        found = sorted({type(m).__name__ for m in model.modules() if "Layer" in type(m).__name__})
        raise ValueError(f"no {layer_class!r} modules to shard; layer classes found: {found}")
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable weights as whole tensors, gathering FSDP shards.

    A collective when the model is sharded: every rank must call it.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()  # an eval forward can leave the root unsharded with freed storage
    trained = trainable_state_dict(model)
    if not any(isinstance(v, DTensor) for v in trained.values()):
        return trained
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)  # every rank; rank 0 gets the tensors
    return {k: cast(torch.Tensor, full[k]) for k in trained if k in full}

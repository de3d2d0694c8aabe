"""Fold merging: K checkpoints of one config (LoRA or full fine-tunes) -> one plain model.

    model, tokenizer, spec = merge_checkpoints([run0, run1, run2], method="delta", cache_dir=c)
    save_merged(model, tokenizer, spec, out / "checkpoints" / "final")
    model, tokenizer, spec = load_checkpoint(out / "checkpoints" / "final", cache_dir=c,
                                               quantization="8bit")  # or the saved one

Methods, for every LoRA-wrapped linear layer with base weight ``W0`` (out, in):

- ``delta`` (default): ``W = W0 + mean_k(s_k * B_k @ A_k)``, the mean of the folds' updates, so
  the merged layer is exactly the average of the K merged fold models' layers;
- ``factor``: ``W = W0 + s * mean_k(B_k) @ mean_k(A_k)``, averaging the factors separately (what
  several competition solutions did; not the mean update, since ``B @ A`` is bilinear).

Every other trained parameter (the head, a full fine-tune's weights) is averaged; the folds' feature
normalisers are averaged too (statistics of overlapping training sets). peft's
``add_weighted_adapter`` is not used: it refuses adapters with ``modules_to_save``.

The merged model has no LoRA: its whole backbone is saved inside the checkpoint (``backbone/``,
``save_pretrained``) with ``backbone.path: backbone``, ``model.lora: null`` and the spec's
``merge`` set, so ``load_checkpoint`` rebuilds it with ``build_merged_model``, also in 8-bit or
4-bit (``model.quantization`` or the ``quantization`` override).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from arena.models.checkpoint import (
    BACKBONE_DIR,
    WEIGHTS_FILE,
    checkpoint_dir,
    load_checkpoint,
    read_spec,
    save_checkpoint,
)
from arena.models.preference import PreferenceModel
from arena.models.quant import Quantization
from arena.models.spec import CheckpointSpec

MergeMethod = Literal["delta", "factor"]
MERGE_METHODS: tuple[str, ...] = ("delta", "factor")
# what must agree between folds (the run config, provenance only, may differ)
COMPARED: tuple[str, ...] = ("backbone", "model", "template", "budget")
_ADAPTER = "default"


def _differences(a: Any, b: Any, where: str) -> list[str]:
    """Dotted keys at which two YAML values differ, with both values."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) | set(b), key=str)
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{where}.{k}")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def check_compatible(paths: Sequence[str | Path], specs: Sequence[CheckpointSpec]) -> None:
    """Refuse folds that do not share backbone, model, template and budget (see ``COMPARED``).

    Raises:
        ValueError: Fewer than one checkpoint, a merged checkpoint among them, or a difference;
            the message names both checkpoint dirs and the differing keys.
    """
    if not specs:
        raise ValueError("merge needs at least one checkpoint: ckpts=[<run dir>, ...]")
    for path, spec in zip(paths, specs, strict=True):
        if spec.merge is not None:
            raise ValueError(f"{path} is already a merged checkpoint; merge the fold checkpoints")
    first = specs[0].to_dict()
    for path, spec in zip(paths[1:], specs[1:], strict=True):
        other = spec.to_dict()
        diffs = [d for key in COMPARED for d in _differences(first[key], other[key], key)]
        if diffs:
            raise ValueError(
                f"checkpoints {paths[0]} and {path} were trained with different configs and "
                f"cannot be merged: {'; '.join(diffs[:5])}"
            )


def lora_layers(model: torch.nn.Module) -> dict[str, LoraLayer]:
    """Module name -> peft LoRA layer, for every adapted layer of ``model``."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def merge_lora_into_base(
    model: PreferenceModel, states: Sequence[Mapping[str, torch.Tensor]], method: MergeMethod
) -> set[str]:
    """Add the folds' averaged LoRA updates to the base weights of every LoRA layer, in place.

    Args:
        model: Built with the folds' LoRA config on an unquantized backbone.
        states: One trainable state dict per fold (``lora_A`` (r, in) and ``lora_B`` (out, r)
            under ``<layer>.lora_A.default.weight`` / ``<layer>.lora_B.default.weight``).
        method: ``delta`` (mean of ``s * B_k @ A_k``) or ``factor`` (``s * mean B @ mean A``).

    Returns:
        The state keys consumed (the LoRA factors).

    Raises:
        ValueError: DoRA, a LoRA bias or another variant the update formula does not cover.
    """
    used: set[str] = set()
    for name, layer in lora_layers(model).items():
        key_a, key_b = f"{name}.lora_A.{_ADAPTER}.weight", f"{name}.lora_B.{_ADAPTER}.weight"
        if _ADAPTER in layer.lora_variant or layer.lora_bias.get(_ADAPTER, False):
            raise ValueError(f"{name}: adapter variants (DoRA, LoRA bias) are not merged here")
        a = torch.stack([s[key_a].double() for s in states])  # (K, r, in)
        b = torch.stack([s[key_b].double() for s in states])  # (K, out, r)
        scaling = float(layer.scaling[_ADAPTER])
        if method == "delta":
            delta = scaling * torch.einsum("kor,kri->oi", b, a) / len(states)  # (out, in)
        else:
            delta = scaling * b.mean(0) @ a.mean(0)
        if getattr(layer, "fan_in_fan_out", False):  # Conv1D-style layers store W transposed
            delta = delta.T
        weight = layer.get_base_layer().weight
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"{name}: base layer has no weight tensor to merge into")
        with torch.no_grad():
            weight.copy_((weight.double() + delta).to(weight.dtype))
        used |= {key_a, key_b}
    return used


def average_parameters(
    model: torch.nn.Module, states: Sequence[Mapping[str, torch.Tensor]], keys: set[str]
) -> None:
    """Set the parameters named ``keys`` to the mean of the folds' values (fp64 sum)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in sorted(keys):
            mean = torch.stack([s[key].double() for s in states]).mean(0)
            params[key].copy_(mean.to(params[key].dtype))


def _check_keys(paths: Sequence[str | Path], states: Sequence[Mapping[str, Any]]) -> None:
    for path, state in zip(paths[1:], states[1:], strict=True):
        if set(state) != set(states[0]):
            odd = sorted(set(state) ^ set(states[0]))
            raise ValueError(f"{path} and {paths[0]} hold different weights, e.g. {odd[:3]}")


def merged_spec(
    specs: Sequence[CheckpointSpec], paths: Sequence[str | Path], method: MergeMethod
) -> CheckpointSpec:
    """The first fold's spec as a merged model: backbone in ``backbone/``, no LoRA, full
    precision, averaged feature normaliser, ``merge`` set and no run config."""
    first = specs[0]
    normalizer = first.feature_normalizer
    if normalizer:
        norms = [s.feature_normalizer or {} for s in specs]
        stats = {k: np.mean([n[k] for n in norms], axis=0).tolist() for k in ("mean", "std")}
        normalizer = {**normalizer, **stats}
    return first.replace(
        backbone=dataclasses.replace(first.backbone, path=BACKBONE_DIR, random_init=False),
        model=dataclasses.replace(first.model, lora=None, quantization="none", quant_storage=None),
        feature_normalizer=normalizer,
        merge={"method": method, "sources": [str(p) for p in paths], "n_folds": len(paths)},
        run=None,
    )


def merge_checkpoints(
    paths: Sequence[str | Path], *, method: MergeMethod = "delta", cache_dir: Path
) -> tuple[PreferenceModel, PreTrainedTokenizerBase, CheckpointSpec]:
    """Merge fold checkpoints (see the module docstring) into one model without LoRA.

    Args:
        paths: Checkpoint dirs or run dirs, trained with the same backbone / model config.
        method: ``delta`` or ``factor``.
        cache_dir: Cache for twin weights and tokenizers.

    Returns:
        ``(model, tokenizer, spec)``: the merged model in eval mode with a frozen backbone
        (trainable: the head only), the first fold's tokenizer, the spec for :func:`save_merged`.

    Raises:
        ValueError: Unknown method, or folds that differ (see :func:`check_compatible`).
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"method={method!r}; expected one of {MERGE_METHODS}")
    specs = [read_spec(p) for p in paths]
    check_compatible(paths, specs)
    states = [load_file(str(checkpoint_dir(p) / WEIGHTS_FILE)) for p in paths]
    _check_keys(paths, states)
    # fold 0 rebuilt on an unquantized base (a QLoRA fold merges into full-precision weights)
    model, tokenizer, _ = load_checkpoint(Path(paths[0]), cache_dir=cache_dir, quantization="none")
    used = merge_lora_into_base(model, states, method)
    average_parameters(model, states, set(states[0]) - used)
    if isinstance(model.backbone, PeftModel):
        model.backbone = model.backbone.unload()  # the LoRA layers give way to their base layers
    model.backbone.requires_grad_(False)
    return model.eval(), tokenizer, merged_spec(specs, paths, method)


def save_merged(
    model: PreferenceModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: CheckpointSpec,
    directory: Path,
) -> Path:
    """Save a merged (or quantized merged) model as a checkpoint dir, atomically.

    The head goes to ``trainable.safetensors`` and the backbone, whole, to ``backbone/``.

    Raises:
        ValueError: ``spec`` is not a merged spec or the backbone is not frozen.
    """
    if spec.merge is None:
        raise ValueError("save_merged needs a spec from merge_checkpoints (no merge section)")
    if any(p.requires_grad for p in model.backbone.parameters()):
        raise ValueError("the merged backbone must be frozen: only the head goes to the weights")
    return save_checkpoint(model, tokenizer, spec, Path(directory), backbone_dir=BACKBONE_DIR)


def quantized_copy(
    directory: Path, quantization: Quantization, *, cache_dir: Path
) -> tuple[PreferenceModel, PreTrainedTokenizerBase, CheckpointSpec]:
    """Load a full-precision merged checkpoint with its backbone in k-bit, ready to save.

    Returns:
        ``(model, tokenizer, spec)`` with ``spec.model.quantization`` set to ``quantization``;
        :func:`save_merged` writes the bitsandbytes-serialized weights.
    """
    if quantization == "none":
        raise ValueError("a quantized copy needs quantization 8bit or 4bit")
    if read_spec(directory).merge is None:
        raise ValueError(f"{directory} is not a merged checkpoint (python -m arena.merge first)")
    model, tokenizer, spec = load_checkpoint(
        directory, cache_dir=cache_dir, quantization=quantization
    )
    return (
        model,
        tokenizer,
        spec.replace(model=dataclasses.replace(spec.model, quantization=quantization)),
    )

"""Checkpoints: only what was trained, plus what is needed to rebuild the rest.

A checkpoint directory holds::

    trainable.safetensors   trainable parameters (LoRA + head, or the whole model without LoRA)
    config.yaml             its CheckpointSpec (arena.models.spec): backbone, model, formatting
    tokenizer/              tokenizer files (padding side and pad token included)
    backbone/               merged models only (arena.models.merge): the whole backbone
                              (save_pretrained, safetensors); its spec's backbone.path is then
                              "backbone", relative to the checkpoint dir, and spec.merge is set

Saving is atomic (write a sibling temp dir, then rename it into place); loading never unpickles.

    save_checkpoint(model, tokenizer, spec, run_dir / "checkpoints" / "final")
    model, tokenizer, spec = load_checkpoint(run_dir / "checkpoints" / "final", cache_dir=cache)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from arena.models.backbone import BackboneSpec, arch_config, build_backbone
from arena.models.preference import (
    PreferenceModel,
    build_preference_model,
    load_trainable_state_dict,
    trainable_state_dict,
)
from arena.models.quant import Quantization, stored_quantization
from arena.models.spec import CheckpointSpec
from arena.utils.io import atomic_dir

WEIGHTS_FILE = "trainable.safetensors"
CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
BACKBONE_DIR = "backbone"


def save_checkpoint(
    model: PreferenceModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: CheckpointSpec | Mapping[str, Any],
    directory: Path,
    weights: Mapping[str, torch.Tensor] | None = None,
    backbone_dir: str | None = None,
) -> Path:
    """Write trainable weights, config and tokenizer; replaces ``directory`` atomically.

    Args:
        model: The trained model (on any device; weights are copied to CPU).
        tokenizer: Its tokenizer.
        spec: What the checkpoint holds; a mapping is read by :meth:`CheckpointSpec.from_dict`.
        directory: Target directory; an existing one is replaced.
        weights: The trainable weights when they are not the model's own local tensors (e.g.
            gathered from FSDP shards); defaults to :func:`trainable_state_dict` of ``model``.
        backbone_dir: Also save the whole backbone (``save_pretrained``: safetensors, quantized
            bitsandbytes weights included) and the tokenizer into this subdirectory (merged
            models).

    Returns:
        ``directory``.
    """
    if not isinstance(spec, CheckpointSpec):
        spec = CheckpointSpec.from_dict(spec)
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        state = trainable_state_dict(model) if weights is None else weights
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        if backbone_dir is not None:
            # with its tokenizer the backbone dir is a model that loads anywhere as
            # backbone.spec.path (a post-pretrained base): without one, transformers builds an
            # empty tokenizer and the first batch fails far from the cause
            model.backbone.save_pretrained(str(tmp / backbone_dir))
            tokenizer.save_pretrained(str(tmp / backbone_dir))
    return directory


def read_spec(path: str | Path) -> CheckpointSpec:
    """The :class:`CheckpointSpec` of a checkpoint dir (or of a run dir's ``checkpoints/final``).

    Raises:
        FileNotFoundError: not a checkpoint dir.
        ValueError: its ``config.yaml`` is no checkpoint spec arena reads (names the file).
    """
    directory = checkpoint_dir(path)
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{directory} has {WEIGHTS_FILE} but no {CONFIG_FILE}")
    values = yaml.safe_load(file.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{file} is not a mapping")
    return CheckpointSpec.from_dict(values, source=file)


def load_checkpoint(
    directory: Path,
    *,
    cache_dir: Path,
    quantization: Quantization | None = None,
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    max_length: int | None = None,
) -> tuple[PreferenceModel, PreTrainedTokenizerBase, CheckpointSpec]:
    """Rebuild the model from the saved spec and load its trained weights (eval mode).

    Args:
        directory: A directory written by :func:`save_checkpoint`, or a run dir holding one in
            ``checkpoints/final``.
        cache_dir: Cache for twin tokenizers / weights.
        quantization: Inference-time override of ``model.quantization`` (``"none"``, ``"8bit"``,
            ``"4bit"``); None keeps the saved one.
        device_map: ``from_pretrained`` placement (e.g. ``{"": "cuda:0"}`` for k-bit weights).
        trust_remote_code: Allow a checkpoint whose ``backbone.trust_remote_code`` is true to run
            the modelling code shipped with its weights; False refuses such a checkpoint (its
            config alone must not decide to run code).
        max_length: Tokens per sequence the caller will score with; checked against the
            backbone's positions before any weight loads.

    Returns:
        ``(model, tokenizer, spec)``; a relative ``backbone.path`` is taken relative to the
        checkpoint dir when it exists there.

    Raises:
        FileNotFoundError: Not a checkpoint directory.
        ValueError: The backbone asks for remote code and ``trust_remote_code`` is False, or an
            option the checkpoint cannot serve (``max_length``, quantizing a full fine-tune).
        KeyError: The weights do not match the rebuilt model's trainable parameters.
    """
    directory = checkpoint_dir(directory)
    spec = read_spec(directory)
    if spec.backbone.trust_remote_code and not trust_remote_code:
        raise ValueError(
            f"{directory} asks to run code shipped with its weights (backbone.trust_remote_code:"
            " true in its config.yaml); if you trust this checkpoint, pass trust_remote_code=true"
        )
    backbone = _local_path(spec.backbone, directory)
    spec.check_max_length(max_length, _position_limit(backbone))
    # a loaded checkpoint scores: recomputing activations only serves training's backward
    backbone = dataclasses.replace(backbone, activation_checkpointing=False)
    kwargs = spec.model.kwargs()
    if quantization is not None:
        kwargs["quantization"] = quantization
    if spec.merge is not None:  # merged folds: the backbone in backbone.path, the head in the file
        model = build_merged_model(backbone, cache_dir=cache_dir, device_map=device_map, **kwargs)
    else:
        if kwargs["quantization"] != "none" and kwargs["lora"] is None:
            raise ValueError(
                f"{directory} holds a full fine-tune: quantized loading needs its backbone saved "
                f"whole; run python -m arena.merge ckpts=[{directory}] first and load that"
            )
        model = build_preference_model(
            backbone, cache_dir=cache_dir, device_map=device_map, **kwargs
        )
    load_trainable_state_dict(model, load_file(str(directory / WEIGHTS_FILE)))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR), local_files_only=True)
    return model, tokenizer, spec


#: model types that number positions from ``pad_token_id + 1`` (RoBERTa's fairseq heritage)
_PAD_OFFSET_POSITIONS = ("roberta", "xlm-roberta")


def _position_limit(spec: BackboneSpec) -> int | None:
    """How many tokens the backbone reads (``max_position_embeddings``), when known."""
    try:
        config = arch_config(spec)
    except (OSError, ValueError):  # no config to read offline: the model load will say why
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if not limit:
        return None
    if config.model_type in _PAD_OFFSET_POSITIONS:  # 514 positions hold 512 tokens
        return int(limit) - int(config.pad_token_id) - 1
    return int(limit)


def build_merged_model(
    spec: BackboneSpec,
    *,
    cache_dir: Path,
    lora: Mapping[str, Any] | None = None,
    quantization: Quantization = "none",
    quant_storage: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> PreferenceModel:
    """A merged checkpoint's model: its saved backbone (frozen, maybe k-bit) + a fresh head.

    The keywords are the spec's ``model``; the model class and head are whatever
    ``build_preference_model`` makes of ``model_kwargs`` (built on the meta device, the head then
    materialised on CPU and re-initialised), the backbone is loaded from ``spec.path``. A
    backbone saved already quantized loads as saved.

    Raises:
        ValueError: LoRA in the config, no ``backbone.path``, or a quantization that differs
            from the one the backbone was saved in.
    """
    if lora is not None:
        raise ValueError("a merged checkpoint has no LoRA: its config needs model.lora: null")
    if not spec.path:
        raise ValueError(f"merged backbone {spec.name!r} needs backbone.path (its saved weights)")
    stored = stored_quantization(spec.path)
    if stored != "none" and quantization != stored:
        raise ValueError(
            f"the backbone in {spec.path} is saved in {stored}; it cannot load as {quantization} "
            f"(quantize from the full-precision merged checkpoint instead)"
        )
    model = build_preference_model(spec, cache_dir=cache_dir, meta=True, **model_kwargs)
    model.head.to_empty(device="cpu")
    for module in model.head.modules():
        if callable(reset := getattr(module, "reset_parameters", None)):
            reset()
    model.backbone = build_backbone(
        spec,
        cache_dir=cache_dir,
        quantization="none" if stored != "none" else quantization,
        quant_storage=quant_storage,
        device_map=device_map,
    )
    model.backbone.requires_grad_(False)
    return model


def _local_path(spec: BackboneSpec, directory: Path) -> BackboneSpec:
    """``spec`` with a relative ``path`` that exists under ``directory`` made absolute."""
    path = spec.path
    if path and not Path(path).is_absolute() and (directory / path).is_dir():
        return dataclasses.replace(spec, path=str(directory / path))
    return spec


def checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint dir, or a run dir holding one in ``checkpoints/final``."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "final"):
        if (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"{path} is neither a checkpoint dir nor a run dir with one")


def read_trainable(path: str | Path) -> dict[str, Any]:
    """The trained weights of a checkpoint (or run) dir, for ``init_from``; safetensors only."""
    return load_file(str(checkpoint_dir(path) / WEIGHTS_FILE))

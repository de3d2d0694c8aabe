"""Checkpoints: only what was trained, plus what is needed to rebuild the rest.

A checkpoint directory holds::

    trainable.safetensors   trainable parameters (LoRA + head, or the whole model without LoRA)
    config.yaml             the resolved run config; load_checkpoint reads two sections of it:
                              backbone: BackboneSpec fields (BackboneSpec.to_dict())
                              model:    build_preference_model keywords: n_classes, head,
                                        n_features, pooling, lora, quantization, quant_storage,
                                        mlp_hidden, head_dropout
    tokenizer/              tokenizer files (padding side and pad token included)
    backbone/               merged models only (arena.models.merge): the whole backbone
                              (save_pretrained, safetensors); backbone.path is then "backbone",
                              a path relative to the checkpoint dir, and a top-level ``merge``
                              section marks the checkpoint

Saving is atomic (write a sibling temp dir, then rename it into place); loading never unpickles.

    save_checkpoint(model, tokenizer, config, run_dir / "checkpoints" / "final")
    model, tokenizer, config = load_checkpoint(run_dir / "checkpoints" / "final", cache_dir=cache)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from arena.models.backbone import BackboneSpec
from arena.models.preference import (
    PreferenceModel,
    build_preference_model,
    load_trainable_state_dict,
    trainable_state_dict,
)
from arena.models.quant import Quantization

WEIGHTS_FILE = "trainable.safetensors"
CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"


def save_checkpoint(
    model: PreferenceModel,
    tokenizer: PreTrainedTokenizerBase,
    config: Mapping[str, Any],
    directory: Path,
    weights: Mapping[str, torch.Tensor] | None = None,
    backbone_dir: str | None = None,
) -> Path:
    """Write trainable weights, config and tokenizer; replaces ``directory`` atomically.

    Args:
        model: The trained model (on any device; weights are copied to CPU).
        tokenizer: Its tokenizer.
        config: Resolved run config (dict or OmegaConf) with ``backbone`` and ``model`` sections.
        directory: Target directory; an existing one is replaced.
        weights: The trainable weights when they are not the model's own local tensors (e.g.
            gathered from FSDP shards); defaults to :func:`trainable_state_dict` of ``model``.
        backbone_dir: Also save the whole backbone (``save_pretrained``: safetensors, quantized
            bitsandbytes weights included) into this subdirectory (merged models).

    Returns:
        ``directory``.
    """
    plain = _plain_config(config)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        state = trainable_state_dict(model) if weights is None else weights
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(plain, sort_keys=False))
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        if backbone_dir is not None:
            model.backbone.save_pretrained(str(tmp / backbone_dir))
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_checkpoint(
    directory: Path,
    *,
    cache_dir: Path,
    quantization: Quantization | None = None,
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreferenceModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Rebuild the model from the saved config and load its trained weights (eval mode).

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

    Returns:
        ``(model, tokenizer, config)``; a relative ``backbone.path`` is taken relative to the
        checkpoint dir when it exists there.

    Raises:
        FileNotFoundError: Not a checkpoint directory.
        ValueError: The backbone asks for remote code and ``trust_remote_code`` is False.
        KeyError: The weights do not match the rebuilt model's trainable parameters.
    """
    directory = checkpoint_dir(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory} has {WEIGHTS_FILE} but no {CONFIG_FILE}")
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    if config["backbone"].get("trust_remote_code") and not trust_remote_code:
        raise ValueError(
            f"{directory} asks to run code shipped with its weights (backbone.trust_remote_code:"
            " true in its config.yaml); if you trust this checkpoint, pass trust_remote_code=true"
        )
    spec = BackboneSpec.from_dict(_local_path(config["backbone"], directory))
    # a loaded checkpoint scores: recomputing activations only serves training's backward
    spec = dataclasses.replace(spec, activation_checkpointing=False)
    kwargs = _model_kwargs(config["model"])
    if quantization is not None:
        kwargs["quantization"] = quantization
    if "merge" in config:  # merged folds: the backbone in backbone.path, the head in the file
        from arena.models.merge import build_merged_model  # merge builds on this module

        model = build_merged_model(spec, cache_dir=cache_dir, device_map=device_map, **kwargs)
    else:
        if kwargs.get("quantization", "none") != "none" and kwargs.get("lora") is None:
            raise ValueError(
                f"{directory} holds a full fine-tune: quantized loading needs its backbone saved "
                f"whole; run python -m arena.merge ckpts=[{directory}] first and load that"
            )
        model = build_preference_model(spec, cache_dir=cache_dir, device_map=device_map, **kwargs)
    load_trainable_state_dict(model, load_file(str(directory / WEIGHTS_FILE)))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR), local_files_only=True)
    return model, tokenizer, config


def _local_path(backbone: dict[str, Any], directory: Path) -> dict[str, Any]:
    """``backbone`` with a relative ``path`` that exists under ``directory`` made absolute."""
    path = backbone.get("path")
    if path and not Path(path).is_absolute() and (directory / path).is_dir():
        return {**backbone, "path": str(directory / path)}
    return backbone


def _model_kwargs(section: Mapping[str, Any]) -> dict[str, Any]:
    """``config["model"]`` as build_preference_model keywords; ``_``-prefixed keys ignored."""
    allowed = set(inspect.signature(build_preference_model).parameters) - {
        "spec",
        "cache_dir",
        "meta",
        "device_map",
    }
    kept = {k: v for k, v in section.items() if not k.startswith("_")}
    unknown = sorted(set(kept) - allowed)
    if unknown:
        raise ValueError(f"unknown config.model keys {unknown}; known {sorted(allowed)}")
    return kept


def _plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve an OmegaConf config, turn tuples into lists, and check the required sections."""
    if OmegaConf.is_config(config):
        plain = OmegaConf.to_container(config, resolve=True)
    else:
        plain = _lists(dict(config))
    if not isinstance(plain, dict) or not {"backbone", "model"} <= set(plain):
        raise ValueError("checkpoint config needs 'backbone' and 'model' sections")
    _model_kwargs(plain["model"])
    BackboneSpec.from_dict(plain["backbone"])
    return {str(k): v for k, v in plain.items()}


def _lists(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex}"
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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

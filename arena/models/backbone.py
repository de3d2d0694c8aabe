"""Backbones: what to load (:class:`BackboneSpec`, one per ``conf/backbone/*.yaml``) and loading it.

    spec = BackboneSpec(name="tiny_qwen2", kind="decoder", arch=TINY_ARCH["qwen2"],
                        random_init=True, lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"))
    model = build_backbone(spec, cache_dir=Path(".cache"), quantization="4bit")
    model = apply_lora(model, r=8, alpha=16, dropout=0.0, targets=spec.lora_targets,
                       quantized=True)
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)

Everything is offline: real weights come from ``path`` (or an ``hf_id`` already in the local HF
cache); twins (``random_init``) are built from ``arch`` with ``torch.manual_seed(seed)``. A
quantized twin is saved once under ``cache_dir`` and reloaded through ``from_pretrained`` with a
``BitsAndBytesConfig``, i.e. through exactly the QLoRA path of a real model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    PretrainedConfig,
    PreTrainedModel,
)

from arena.models.quant import (
    Quantization,
    disable_cpu_weight_repack,
    quantization_config,
    torch_dtype,
)
from arena.utils.io import atomic_dir

_CHOICES: dict[str, tuple[str, ...]] = {
    "kind": ("decoder", "encoder"),
    "padding_side": ("left", "right"),
    "pad_token": ("existing", "eos", "unk"),
}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build one backbone; the fields are the keys of ``conf/backbone/*.yaml``.

    Attributes:
        name: Config name, e.g. ``"gemma2_9b"``.
        kind: ``"decoder"`` (causal LM trunk) or ``"encoder"`` (BERT-like).
        hf_id: Hub id, read only from the local HF cache (no downloads).
        path: Local directory with weights and tokenizer; wins over ``hf_id``.
        arch: transformers config dict incl. ``model_type``: builds twins and meta-device plans.
        random_init: Tiny twin: random weights from ``seed``, nothing read from disk.
        seed: Seed of a twin's weights (independent of the run seed).
        dtype: Parameter dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); also the 4-bit
            compute dtype.
        attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ``"flex_attention"``,
            or a list of them, fastest first: the first this machine runs is used
            (:meth:`attention`; family YAMLs list only the implementations exact for the model).
        decoder_layer: Class name of the repeated block (e.g. ``"Gemma2DecoderLayer"``), the unit
            that FSDP shards and activation checkpointing wraps.
        padding_side: Tokenizer padding side.
        pad_token: ``"existing"`` pad token, or reuse ``"eos"`` / ``"unk"``.
        lora_targets: Module names LoRA adapts by default.
        trust_remote_code: Allow custom modelling code shipped with the weights.
        activation_checkpointing: Recompute activations in backward (transformers' own switch).
        tokenizer_vocab_size: Size of a twin's locally trained tokenizer.
        config_overrides: transformers config attributes set when the backbone is built or
            loaded, e.g. ``{attention_probs_dropout_prob: 0.0}`` (dropout on attention
            probabilities sends CPU training to SDPA's slow math kernel).
    """

    name: str
    kind: Literal["decoder", "encoder"]
    hf_id: str | None = None
    path: str | None = None
    arch: dict[str, Any] | None = None
    random_init: bool = False
    seed: int = 0
    dtype: str = "float32"
    attn_implementation: str | tuple[str, ...] = "sdpa"
    decoder_layer: str | None = None
    padding_side: Literal["left", "right"] = "right"
    pad_token: Literal["existing", "eos", "unk"] = "existing"
    lora_targets: tuple[str, ...] = ()
    trust_remote_code: bool = False
    activation_checkpointing: bool = False
    tokenizer_vocab_size: int = 4096
    config_overrides: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # YAML / Hydra hand lists and DictConfigs: store a hashable tuple and a plain dict
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if not isinstance(self.attn_implementation, str):
            object.__setattr__(self, "attn_implementation", tuple(self.attn_implementation))
        for key in ("arch", "config_overrides"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, dict(getattr(self, key)))
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"backbone.{key}={getattr(self, key)!r}; expected one of {allowed}"
                )
        torch_dtype(self.dtype)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BackboneSpec:
        """Build from a YAML mapping; ``_``-prefixed keys are ignored, unknown ones rejected."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if not k.startswith("_")}
        unknown = sorted(set(kept) - known)
        if unknown:
            raise ValueError(f"unknown backbone keys {unknown}; known: {sorted(known)}")
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples as lists); inverse of :meth:`from_dict`."""
        values = asdict(self)
        values["lora_targets"] = list(self.lora_targets)
        if not isinstance(self.attn_implementation, str):
            values["attn_implementation"] = list(self.attn_implementation)
        return values

    def attention(self) -> str:
        """The attention implementation to load: the one named, or of a list the first this
        machine has (see :func:`attention_available`).

        Raises:
            ValueError: none of the listed implementations runs here.
        """
        if isinstance(self.attn_implementation, str):
            return self.attn_implementation
        for name in self.attn_implementation:
            if attention_available(name):
                return name
        raise ValueError(
            f"backbone {self.name!r}: none of attn_implementation={list(self.attn_implementation)}"
            " runs on this machine; add eager (always available) to the list"
        )


#: attention kernels that skip the blocks a packed row masks out (eager and sdpa apply the
#: row's block-diagonal mask densely: exact, but dearer than padding short sequences)
PACKING_ATTENTION = ("flash_attention_2", "flex_attention")


def resolve_packing(packing: bool | str, spec: BackboneSpec) -> bool:
    """``data.packing``: true or false as given; ``auto`` packs a decoder whose attention
    implementation here (:meth:`BackboneSpec.attention`) is one of :data:`PACKING_ATTENTION`.

    Raises:
        ValueError: another value.
    """
    if packing == "auto":
        return spec.kind == "decoder" and spec.attention() in PACKING_ATTENTION
    if isinstance(packing, bool):
        return packing
    raise ValueError(f"data.packing={packing!r}; expected true, false or auto")


def attention_available(name: str) -> bool:
    """Whether an attention implementation runs here: the fused kernels only on CUDA
    (``flash_attention_2`` with the flash-attn package installed; ``flex_attention`` compiles
    for tens of seconds per shape on a CPU), ``sdpa`` and ``eager`` everywhere."""
    if name in ("sdpa", "eager"):
        return True
    if not torch.cuda.is_available():
        return False
    if name == "flash_attention_2":
        return importlib.util.find_spec("flash_attn") is not None
    return name == "flex_attention"


def arch_config(spec: BackboneSpec) -> PretrainedConfig:
    """The transformers config: from ``spec.arch``, else from ``config.json`` under path/hf_id."""
    if spec.arch is not None:
        arch = dict(spec.arch)
        model_type = arch.pop("model_type", None)
        if model_type is None:
            raise ValueError(f"backbone {spec.name!r}: arch needs a 'model_type'")
        return AutoConfig.for_model(model_type, **arch, **(spec.config_overrides or {}))
    source = spec.path or spec.hf_id
    if source is None:
        raise ValueError(f"backbone {spec.name!r} has neither arch nor path nor hf_id")
    try:
        return AutoConfig.from_pretrained(
            source,
            local_files_only=True,
            trust_remote_code=spec.trust_remote_code,
            **(spec.config_overrides or {}),
        )
    except OSError as err:
        raise FileNotFoundError(_missing(spec, source)) from err


def build_backbone(
    spec: BackboneSpec,
    *,
    cache_dir: Path,
    quantization: Quantization = "none",
    meta: bool = False,
    quant_storage: str | None = None,
    device_map: str | dict[str, Any] | None = None,
) -> PreTrainedModel:
    """Build the bare trunk (``AutoModel``: no LM head, outputs ``last_hidden_state`` (B, T, H)).

    Args:
        spec: The backbone.
        cache_dir: Cache for twin weights saved once for quantized reloading.
        quantization: ``"4bit"`` (nf4, double quant, compute dtype ``spec.dtype``) or ``"8bit"``.
        meta: Build on the meta device from ``arch`` (no weights, no memory) for planning; the
            quantization argument is then ignored (a plan prices bytes per parameter itself).
        quant_storage: ``bnb_4bit_quant_storage`` (default uint8); FSDP-QLoRA needs the compute
            dtype here so that 4-bit weights shard like float ones.
        device_map: Passed to ``from_pretrained`` (e.g. ``{"": local_rank}`` on GPUs).

    Returns:
        The model; 4-bit layers have the CPU inference repack disabled
        (:func:`disable_cpu_weight_repack`).
    """
    if meta:  # attention never runs in a plan: eager avoids needing flash-attn / SDPA support
        with torch.device("meta"):
            return _from_config(spec, attn_implementation="eager")
    if spec.random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model = _from_config(spec)
        if quantization == "none":
            return model
        source = _cache_twin_weights(model, spec, Path(cache_dir))
    elif spec.path or spec.hf_id:
        source = str(spec.path or spec.hf_id)
    else:
        raise ValueError(f"backbone {spec.name!r} needs backbone.spec.path or backbone.spec.hf_id")
    model = _from_pretrained(spec, source, quantization, quant_storage, device_map)
    disable_cpu_weight_repack(model)
    return model


def _from_config(spec: BackboneSpec, attn_implementation: str | None = None) -> PreTrainedModel:
    return AutoModel.from_config(
        arch_config(spec),
        dtype=torch_dtype(spec.dtype),
        attn_implementation=attn_implementation or spec.attention(),
        trust_remote_code=spec.trust_remote_code,
    )


def _from_pretrained(
    spec: BackboneSpec,
    source: str,
    quantization: Quantization,
    quant_storage: str | None,
    device_map: str | dict[str, Any] | None,
) -> PreTrainedModel:
    kwargs: dict[str, Any] = dict(spec.config_overrides or {})
    if quantization != "none":
        kwargs["quantization_config"] = quantization_config(
            quantization, compute_dtype=spec.dtype, quant_storage=quant_storage
        )
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return AutoModel.from_pretrained(
            source,
            local_files_only=True,
            dtype=torch_dtype(spec.dtype),
            attn_implementation=spec.attention(),
            trust_remote_code=spec.trust_remote_code,
            **kwargs,
        )
    except OSError as err:
        raise FileNotFoundError(_missing(spec, source)) from err


def layer_classes(model: nn.Module, spec: BackboneSpec) -> set[type[nn.Module]]:
    """The module classes named ``spec.decoder_layer`` in ``model`` (FSDP / checkpointing units).

    Raises:
        ValueError: ``decoder_layer`` is unset or names no module of the model.
    """
    if spec.decoder_layer is None:
        raise ValueError(f"backbone {spec.name!r}: set backbone.spec.decoder_layer for sharding")
    found = {type(m) for m in model.modules() if type(m).__name__ == spec.decoder_layer}
    if not found:
        names = sorted({type(m).__name__ for m in model.modules() if "Layer" in type(m).__name__})
        raise ValueError(
            f"backbone.spec.decoder_layer={spec.decoder_layer!r} not in model; has {names}"
        )
    return found


def _twin_key(spec: BackboneSpec) -> str:
    payload = {"arch": spec.arch, "seed": spec.seed, "dtype": spec.dtype, "name": spec.name}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cache_twin_weights(model: PreTrainedModel, spec: BackboneSpec, cache_dir: Path) -> str:
    """Save a twin's random weights once (safetensors) so they can be reloaded quantized."""
    target = cache_dir / "twins" / f"{spec.name}-{_twin_key(spec)}"
    if not (target / "config.json").exists():
        with atomic_dir(target, replace=False) as tmp:  # another rank may save them first
            model.save_pretrained(str(tmp), safe_serialization=True)
    return str(target)


def _missing(spec: BackboneSpec, source: str) -> str:
    return (
        f"weights of backbone {spec.name!r} not found offline at {source!r} "
        f"(backbone.spec.path={spec.path!r}, backbone.spec.hf_id={spec.hf_id!r}); nothing is "
        "downloaded: set backbone.spec.path=<local directory with config.json and *.safetensors>"
    )

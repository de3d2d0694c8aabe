"""LoRA / QLoRA adapters on a bare backbone, via peft.

The classification head is *not* a peft ``modules_to_save`` module: it lives beside the backbone in
:class:`arena.models.preference.PreferenceModel`, so peft never wraps, drops or re-initialises it.

    model = apply_lora(backbone, r=16, alpha=32, dropout=0.05,
                       targets=("q_proj", "k_proj", "v_proj", "o_proj"), quantized=True)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import PreTrainedModel


def apply_lora(
    model: PreTrainedModel,
    *,
    r: int,
    alpha: int,
    dropout: float,
    targets: Sequence[str] | str,
    quantized: bool,
    activation_checkpointing: bool = False,
) -> PeftModel:
    """Freeze the backbone and add LoRA adapters to ``targets``.

    Args:
        model: Bare backbone from :func:`arena.models.backbone.build_backbone`.
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is ``alpha / r * B @ A``).
        dropout: Dropout on the LoRA input.
        targets: Module names (e.g. ``("q_proj", "v_proj")``) or ``"all-linear"``.
        quantized: The backbone was loaded in 4/8 bit: run peft's
            ``prepare_model_for_kbit_training`` (freezes all, upcasts non-quantized fp16/bf16
            parameters such as norms and embeddings to fp32).
        activation_checkpointing: Enable transformers' activation checkpointing (non-reentrant),
            which also makes the input embeddings' output require grad.

    Returns:
        The peft model; only ``lora_A`` / ``lora_B`` weights require grad.

    Raises:
        ValueError: No targets.
    """
    if not targets:
        raise ValueError("LoRA needs targets: set backbone.lora_targets or model.lora.targets")
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if activation_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    target_modules = targets if isinstance(targets, str) else list(targets)
    if target_modules == ["all-linear"]:
        target_modules = "all-linear"
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none"
    )
    with warnings.catch_warnings():
        # peft 0.21's PeftModel reads transformers' deprecated ``is_gradient_checkpointing``
        # property (a FutureWarning on every LoRA model); arena itself uses the
        # ``activation_checkpointing_*`` API. Drop this once peft reads the new property.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        return get_peft_model(model, config)

"""Backbones, pooling, heads and the preference model (no Lightning here).

spec = BackboneSpec.from_dict(cfg.backbone)
tokenizer = load_tokenizer(spec, cache_dir)
model = build_preference_model(spec, n_classes=2, lora={"r": 16, "alpha": 32, "dropout": 0.05},
                               quantization="4bit", cache_dir=cache_dir)
logits = model(input_ids, attention_mask)  # (B, T), (B, T) -> (B, 2) fp32
save_checkpoint(model, tokenizer, CheckpointSpec(spec, ModelOptions(n_classes=2)), ckpt_dir)
merged, tokenizer, spec = merge_checkpoints([fold0_dir, fold1_dir], method="delta", cache_dir=c)
save_merged(merged, tokenizer, spec, out_dir)  # load_checkpoint(out_dir, quantization="8bit")
"""

from arena.models.backbone import BackboneSpec, arch_config, build_backbone, layer_classes
from arena.models.checkpoint import load_checkpoint, read_spec, save_checkpoint
from arena.models.heads import HEAD_KINDS, ClassifierHead, make_head
from arena.models.lora import apply_lora
from arena.models.merge import merge_checkpoints, quantized_copy, save_merged
from arena.models.pooling import POOLING_MODES, pool, positions_from_mask
from arena.models.preference import (
    PreferenceModel,
    build_preference_model,
    load_trainable_state_dict,
    trainable_state_dict,
)
from arena.models.quant import (
    disable_cpu_weight_repack,
    quantization_config,
    quantization_from_bits,
    torch_dtype,
)
from arena.models.spec import CheckpointSpec, ModelOptions
from arena.models.tiny import TINY_ARCH
from arena.models.tokenizer import load_tokenizer

__all__ = [
    "HEAD_KINDS",
    "POOLING_MODES",
    "TINY_ARCH",
    "BackboneSpec",
    "CheckpointSpec",
    "ClassifierHead",
    "ModelOptions",
    "PreferenceModel",
    "apply_lora",
    "arch_config",
    "build_backbone",
    "build_preference_model",
    "disable_cpu_weight_repack",
    "layer_classes",
    "load_checkpoint",
    "load_tokenizer",
    "load_trainable_state_dict",
    "make_head",
    "merge_checkpoints",
    "pool",
    "positions_from_mask",
    "quantization_config",
    "quantization_from_bits",
    "quantized_copy",
    "read_spec",
    "save_checkpoint",
    "save_merged",
    "torch_dtype",
    "trainable_state_dict",
]

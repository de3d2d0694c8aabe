"""dtypes and bitsandbytes quantization (QLoRA nf4, LLM.int8()), with the CPU repack fix.

config = quantization_config("4bit", compute_dtype="bfloat16", quant_storage="bfloat16")
model = AutoModel.from_pretrained(path, quantization_config=config, local_files_only=True)
disable_cpu_weight_repack(model)  # always, right after loading
quantization_from_bits(8)  # "8bit": the predict / merge CLIs' ``quantize=8``
stored_quantization(Path("ckpt/backbone"))  # "8bit" for a saved pre-quantized backbone
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import BitsAndBytesConfig

Quantization = Literal["none", "4bit", "8bit"]


def torch_dtype(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``, rejecting anything that is not a float dtype."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype {name!r} is not a torch floating-point dtype")
    return dtype


def storage_dtype(name: str) -> torch.dtype:
    """``"uint8"`` or a float dtype name -> torch dtype (the valid 4-bit storage types)."""
    return torch.uint8 if name == "uint8" else torch_dtype(name)


def quantization_config(
    quantization: Quantization,
    *,
    compute_dtype: str = "float32",
    quant_storage: str | None = None,
) -> BitsAndBytesConfig:
    """The bitsandbytes config: QLoRA's nf4 + double quant, or LLM.int8().

    Args:
        quantization: ``"4bit"`` or ``"8bit"``.
        compute_dtype: 4-bit compute dtype (the backbone's ``dtype``).
        quant_storage: 4-bit storage dtype, default ``"uint8"``; FSDP-QLoRA needs the compute
            dtype here so that packed weights shard like float ones.

    Raises:
        ValueError: Any other quantization.
    """
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization != "4bit":
        raise ValueError(f"quantization={quantization!r}; expected 4bit or 8bit")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
        bnb_4bit_quant_storage=storage_dtype(quant_storage or "uint8"),
    )


def disable_cpu_weight_repack(model: nn.Module) -> int:
    """Turn off bitsandbytes' CPU inference repack on every ``Linear4bit``; returns how many.

    bitsandbytes 0.50 repacks a 4-bit weight into an AVX512-BF16 layout the first time the layer
    runs on CPU in eval mode without grad (a validation pass); training forwards after that go
    through the inference kernel (no autograd) and give wrong LoRA gradients. The switch is the
    instance attribute ``support_avx512bf16_for_cpu`` that ``Linear4bit.__init__`` sets from the
    CPU's features (``bitsandbytes/nn/modules.py``). Only CPU inference speed is given up.
    A model holds 4-bit layers only if bitsandbytes was imported to build them, so it is not
    imported here (full-precision models load where it is not installed).
    """
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:
        return 0

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def quantization_from_bits(bits: int | str | None) -> Quantization | None:
    """The CLIs' ``quantize=null|8|4`` / ``export_bits=...`` as a quantization (None: unset).

    Raises:
        ValueError: Anything but null, 8 or 4 (also accepted: ``"8bit"``, ``"4bit"``, ``"none"``).
    """
    if bits is None:
        return None
    names: dict[str, Quantization] = {"8": "8bit", "4": "4bit", "8bit": "8bit", "4bit": "4bit"}
    names["none"] = "none"
    key = str(bits).strip().lower()
    if key not in names:
        raise ValueError(f"quantization bits {bits!r}; expected null, 8 (LLM.int8()) or 4 (nf4)")
    return names[key]


def stored_quantization(directory: str | Path) -> Quantization:
    """How the weights saved in ``directory`` (a ``save_pretrained`` dir) are quantized.

    bitsandbytes-serialized weights carry a ``quantization_config`` in ``config.json``; plain
    float weights do not (``"none"``).

    Raises:
        ValueError: A quantization method other than bitsandbytes 8-bit / 4-bit.
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        return "none"
    quant = json.loads(path.read_text()).get("quantization_config")
    if not quant:
        return "none"
    if quant.get("load_in_8bit"):
        return "8bit"
    if quant.get("load_in_4bit"):
        return "4bit"
    raise ValueError(f"{path}: quantization_config {quant} is not bitsandbytes 8-bit or 4-bit")

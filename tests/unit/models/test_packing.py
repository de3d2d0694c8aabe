"""Padding-free packing is exact: for every tiny decoder family, with LoRA and with 4-bit QLoRA,
sequences packed side by side in rows (:func:`arena.data.batching.pack`) give the logits and
the training gradients of the same sequences padded (fp32, within 1e-4), whatever the pooling;
an encoder cannot read packed rows and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arena.data.batching import model_inputs, pack, pad
from arena.models import build_preference_model
from arena.models.quant import disable_cpu_weight_repack
from tests.unit.models.test_models import LORA, SPEC_OVERRIDES, twin

LENGTHS = (37, 5, 23, 1, 12, 30)  # heavy-tailed, one single-token sequence


def batches(vocab: int, side: str, row_tokens: int) -> tuple[dict, dict]:
    """The same sequences padded on ``side`` and packed in rows of ``row_tokens``."""
    gen = torch.Generator().manual_seed(3)
    seqs = [torch.randint(5, vocab, (n,), generator=gen).numpy() for n in LENGTHS]
    ids, mask = pad(seqs, 0, side)  # type: ignore[arg-type]
    return {"input_ids": ids, "attention_mask": mask}, pack(seqs, row_tokens)


@pytest.mark.parametrize("quantization", ["none", "4bit"])
@pytest.mark.parametrize(
    ("family", "pooling"),
    [("gemma2", "last"), ("qwen2", "last"), ("llama", "last"), ("qwen2", "mean"), ("llama", "cls")],
)
def test_packed_logits_and_gradients_equal_padded(
    family: str, pooling: str, quantization: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    spec = twin(family)
    model = build_preference_model(
        spec,
        n_classes=3,
        pooling=pooling,
        lora=LORA,
        quantization=quantization,
        cache_dir=tmp_path,
    )
    disable_cpu_weight_repack(model)
    model.eval()  # no dropout: both layouts see the same function (gradients flow all the same)
    with torch.no_grad():  # B != 0, so LoRA changes the logits and gets gradients of its own
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    side = SPEC_OVERRIDES[family].get("padding_side", "right")
    padded, packed = batches(spec.arch["vocab_size"], side, row_tokens=48)
    assert packed["input_ids"].shape[0] > 1  # several rows: the row layout is exercised too
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    grads, logits = [], []
    for batch in (padded, packed):
        model.zero_grad(set_to_none=True)
        out = model(**model_inputs(batch))
        torch.nn.functional.cross_entropy(out, target).backward()
        logits.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert (logits[0] - logits[1]).abs().max() <= 1e-4
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    for name, grad in grads[0].items():
        assert (grad - grads[1][name]).abs().max() <= 1e-4 * max(1.0, grad.abs().max()), name


def test_an_encoder_cannot_read_packed_rows_and_says_so(tmp_path: Path) -> None:
    encoder = build_preference_model(twin("bert"), n_classes=2, cache_dir=tmp_path)
    _, packed = batches(100, "right", row_tokens=64)
    with pytest.raises(ValueError, match="data.packing=true needs a decoder.*encoder"):
        encoder(**model_inputs(packed))

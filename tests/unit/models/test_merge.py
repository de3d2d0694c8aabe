"""Fold merging: delta merge = mean of the folds' merged models, factor merge differs, merged
checkpoints reload to the same logits (full precision and bitsandbytes 8-bit / 4-bit copies),
mismatched folds are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from arena.models.checkpoint import load_checkpoint
from arena.models.merge import merge_checkpoints, quantized_copy, save_merged
from arena.models.quant import quantization_from_bits, stored_quantization


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 4000, (3, 24), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0
    return ids, mask


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(*batch())


def merged_fold_weights(path: Path, cache: Path) -> dict[str, torch.Tensor]:
    """peft's own merge of one fold: ``W0 + s * B @ A`` in every adapted layer."""
    model, _, _ = load_checkpoint(path, cache_dir=cache)
    model.backbone = model.backbone.merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_delta_merge_is_the_mean_of_the_merged_folds(folds: dict[str, Path]) -> None:
    cache, paths = folds["cache"], [folds["f0"], folds["f1"]]
    each = [merged_fold_weights(p, cache) for p in paths]
    delta, _, config = merge_checkpoints(paths, method="delta", cache_dir=cache)
    state = delta.state_dict()
    assert set(state) == set(each[0]) and config.model.lora is None
    assert config.merge == {"method": "delta", "sources": [str(p) for p in paths], "n_folds": 2}
    q = "backbone.layers.0.self_attn.q_proj.weight"
    assert (each[0][q] - each[1][q]).abs().max() > 1e-3  # the folds really differ
    for key, value in state.items():  # heads averaged; every other weight shared by the folds
        torch.testing.assert_close(value, (each[0][key] + each[1][key]) / 2, atol=1e-6, rtol=0)

    factor, _, _ = merge_checkpoints(paths, method="factor", cache_dir=cache)
    gap = (factor.state_dict()[q] - state[q]).abs().max()
    assert gap > 1e-4  # mean(B) @ mean(A) is not the mean of B @ A
    fold_a = [load_checkpoint(p, cache_dir=cache)[0].state_dict() for p in paths]
    a_key = "backbone.base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    b_key = a_key.replace("lora_A", "lora_B")
    base = fold_a[0]["backbone.base_model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    mean_a = (fold_a[0][a_key] + fold_a[1][a_key]) / 2
    mean_b = (fold_a[0][b_key] + fold_a[1][b_key]) / 2
    by_hand = base + 2.0 * mean_b @ mean_a  # scaling = alpha / r = 2
    torch.testing.assert_close(factor.state_dict()[q], by_hand, atol=1e-6, rtol=0)
    assert not torch.equal(logits_of(factor), logits_of(delta))


def test_merged_checkpoint_reloads_to_identical_logits(folds, merged, tmp_path: Path) -> None:
    model, _, config = merge_checkpoints(
        [folds["f0"], folds["f1"]], method="delta", cache_dir=folds["cache"]
    )
    loaded, tokenizer, saved = load_checkpoint(merged, cache_dir=folds["cache"])
    assert torch.equal(logits_of(loaded), logits_of(model))
    assert saved.backbone.path == "backbone" and saved.merge and saved.merge["method"] == "delta"
    assert (merged / "backbone" / "model.safetensors").is_file() and saved.run is None
    heads = set(loaded.state_dict()) - {k for k in loaded.state_dict() if k.startswith("backbone.")}
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == heads
    assert tokenizer.padding_side == "right"
    moved = Path(shutil.copytree(merged, tmp_path / "elsewhere"))  # backbone.path is relative
    relocated, _, _ = load_checkpoint(moved, cache_dir=folds["cache"])
    assert torch.equal(logits_of(relocated), logits_of(model))


def test_merging_identical_folds_gives_the_fold(folds: dict[str, Path]) -> None:
    cache = folds["cache"]
    fold, _, _ = load_checkpoint(folds["f0"], cache_dir=cache)
    expected = logits_of(fold)
    for method in ("delta", "factor"):
        model, _, _ = merge_checkpoints([folds["f0"]] * 2, method=method, cache_dir=cache)
        torch.testing.assert_close(logits_of(model), expected, atol=1e-5, rtol=0)


def test_mismatched_or_merged_checkpoints_are_refused(folds, merged: Path) -> None:
    cache = folds["cache"]
    with pytest.raises(ValueError, match=r"different configs.*model\.lora\.r: 4 vs 8"):
        merge_checkpoints([folds["f0"], folds["r8"]], cache_dir=cache)
    with pytest.raises(ValueError, match="already a merged checkpoint"):
        merge_checkpoints([merged, folds["f0"]], cache_dir=cache)
    with pytest.raises(ValueError, match="method='mean'"):
        merge_checkpoints([folds["f0"]], method="mean", cache_dir=cache)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected null, 8"):
        quantization_from_bits(3)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_copy_saves_and_reloads_to_the_same_outputs(folds, merged, bits) -> None:
    cache, quantization = folds["cache"], quantization_from_bits(bits)
    assert quantization is not None
    model, tokenizer, config = quantized_copy(merged, quantization, cache_dir=cache)
    out = save_merged(model, tokenizer, config, merged.parent / f"merged_{bits}bit")
    assert stored_quantization(out / "backbone") == quantization
    loaded, _, _ = load_checkpoint(out, cache_dir=cache)
    full, _, _ = load_checkpoint(merged, cache_dir=cache)
    torch.testing.assert_close(logits_of(loaded), logits_of(model), atol=1e-6, rtol=0)
    reference = logits_of(full)
    gap = (logits_of(loaded) - reference).abs().max() / reference.std()
    assert 0 < gap < {8: 0.05, 4: 0.5}[bits]  # really quantized; nf4 is coarse on a tiny twin
    other = "4bit" if quantization == "8bit" else "8bit"
    with pytest.raises(ValueError, match=f"saved in {quantization}"):
        load_checkpoint(out, cache_dir=cache, quantization=other)

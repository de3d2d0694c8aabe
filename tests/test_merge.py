"""Fold merging and quantized inference: delta merge = mean of the folds' merged models, factor
merge differs, merged checkpoints reload to the same logits (full precision and bitsandbytes
8-bit / 4-bit copies), mismatched folds are refused; ``arena.merge`` (a subprocess) reports the gap
to the fold ensemble and ``arena.predict quantize=8|4`` (in process) its ``quantized`` block."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from arena.data.synthetic import make_synthetic
from arena.inference import Predictor
from arena.inference.run import predict_run
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.checkpoint import load_checkpoint, save_checkpoint
from arena.models.merge import merge_checkpoints, quantized_copy, save_merged
from arena.models.quant import quantization_from_bits, stored_quantization
from tests.conftest import CONF, ROOT
from tests.predict_helpers import BUDGET, TEMPLATE, spread_out, write_wsdm

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_fold(root: Path, cache: Path, seed: int, r: int = 4) -> Path:
    """A tiny Qwen2 LoRA checkpoint whose adapters and head are random draws of ``seed``."""
    spec = BackboneSpec(
        name="tiny_qwen2",
        kind="decoder",
        arch=TINY_ARCH["qwen2"],
        random_init=True,
        lora_targets=TARGETS,
    )
    model_kw = {
        "n_classes": 2,
        "head": "linear",
        "pooling": "mean",
        "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0},
    }
    model = build_preference_model(spec, cache_dir=cache, **model_kw).eval()
    torch.manual_seed(seed)
    with torch.no_grad():  # B != 0: every fold moves its layers, each differently
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, 0.1 if "lora_A" in name else 0.05)
    config = {
        "backbone": spec.to_dict(),
        "model": model_kw,
        "template": asdict(TEMPLATE),
        "data": {"budget": BUDGET, "n_classes": 2},
        "run": {"seed": seed},
    }
    tokenizer = load_tokenizer(spec, cache)
    spread_out(Predictor.from_loaded(model, tokenizer, config), seed)
    return save_checkpoint(model, tokenizer, config, root / f"fold{seed}_r{r}")


@pytest.fixture(scope="module")
def folds(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folds")
    cache = root / "cache"
    return {
        "f0": lora_fold(root, cache, 0),
        "f1": lora_fold(root, cache, 1),
        "r8": lora_fold(root, cache, 2, r=8),
        "cache": cache,
    }


@pytest.fixture(scope="module")
def merged(folds: dict[str, Path]) -> Path:
    model, tokenizer, config = merge_checkpoints(
        [folds["f0"], folds["f1"]], method="delta", cache_dir=folds["cache"]
    )
    return save_merged(model, tokenizer, config, folds["f0"].parent / "merged")


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
    assert set(state) == set(each[0]) and config["model"]["lora"] is None
    assert config["merge"] == {"method": "delta", "sources": [str(p) for p in paths], "n_folds": 2}
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
    assert saved["backbone"]["path"] == "backbone" and saved["merge"]["method"] == "delta"
    assert (merged / "backbone" / "model.safetensors").is_file() and "run" not in saved
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


def cli(module: str, args: list[str], cache: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", module, *args, f"paths.cache_dir={cache}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.integration
def test_merge_cli_reports_the_gap_to_the_ensemble(folds, tmp_path: Path) -> None:
    df = make_synthetic(16, seed=8, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    out = tmp_path / "merge"
    args = [f"ckpts=[{folds['f0']},{folds['f1']}]", f"output_dir={out}", f"data.test_file={test}"]
    cli("arena.merge", [*args, "export_bits=8", "max_tokens=400"], folds["cache"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "delta" and summary["n_rows"] == 16
    assert summary["ckpts"] == [str(folds["f0"]), str(folds["f1"])]
    for key in ("acc", "ensemble_acc"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["log_loss"] > 0 and summary["ensemble_log_loss"] > 0
    assert 0 < summary["max_abs_prob_diff"] < 0.5  # a merge is close to, not equal to, the ensemble
    export = summary["export"]
    assert export["bits"] == 8 and 0 <= export["max_abs_prob_diff"] < 0.5
    merged = Predictor.from_checkpoint(out / "checkpoints" / "final", cache_dir=folds["cache"])
    probs = merged.predict(df)
    truth = probs[np.arange(16), df["label"].to_numpy()]
    assert summary["log_loss"] == pytest.approx(float(-np.log(truth).mean()), abs=1e-5)
    assert stored_quantization(out / "checkpoints" / "quantized_8bit" / "backbone") == "8bit"


def predict_in_process(overrides: list[str], out: Path, cache: Path) -> dict:
    """``python -m arena.predict`` without the subprocess (the import alone is most of its time)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[*overrides, f"output_dir={out}"])
    with open_dict(cfg):
        cfg.paths.cache_dir, cfg.paths.output_dir = str(cache), str(out)
    return predict_run(cfg)


def test_predict_8bit_lora_fold_streamed_reports_the_quantized_block(folds, tmp_path) -> None:
    df = make_synthetic(16, seed=9, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    args = [f"ckpt={folds['f0']}", f"data.test_file={test}", "quantize=8", "chunk_rows=5"]
    out = tmp_path / "pred"
    summary = predict_in_process([*args, "quantize_reference=true"], out, folds["cache"])
    assert json.loads((out / "summary.json").read_text())["quantized"] == summary["quantized"]
    block = summary["quantized"]
    assert block["bits"] == 8 and block["acc"] == summary["acc"]
    reference = Predictor.from_checkpoint(folds["f0"], cache_dir=folds["cache"]).predict(df)
    truth = reference[np.arange(16), df["label"].to_numpy()]
    assert block["reference_log_loss"] == pytest.approx(float(-np.log(truth).mean()), abs=1e-5)
    assert block["delta_acc"] == pytest.approx(block["acc"] - block["reference_acc"])
    assert block["delta_log_loss"] == pytest.approx(block["log_loss"] - block["reference_log_loss"])
    assert 0 < block["max_abs_prob_diff"] < 0.5


def test_predict_4bit_merged_in_memory_reports_the_quantized_block(folds, merged, tmp_path) -> None:
    df = make_synthetic(12, seed=10, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    args = [f"ckpt={merged}", f"data.test_file={test}", "quantize=4", "quantize_reference=true"]
    out = tmp_path / "out"
    summary = predict_in_process([*args, "chunk_rows=null"], out, folds["cache"])
    block = summary["quantized"]
    assert block["bits"] == 4 and block["log_loss"] == summary["log_loss"]
    full = Predictor.from_checkpoint(merged, cache_dir=folds["cache"]).predict(df)
    assert block["reference_acc"] == pytest.approx(float((full.argmax(1) == df["label"]).mean()))
    probs = pd.read_parquet(out / "probs.parquet").filter(like="prob_").to_numpy()
    assert block["max_abs_prob_diff"] == pytest.approx(float(np.abs(probs - full).max()), abs=1e-6)
    assert block["max_abs_prob_diff"] > 0

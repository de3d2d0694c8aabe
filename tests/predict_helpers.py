"""Shared by the inference tests: tiny checkpoints built through the library, test files in the
WSDM and LMSYS layouts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from arena.data.features import FEATURE_NAMES, FeatureNormalizer, compute_features
from arena.data.format import Template
from arena.data.synthetic import make_synthetic
from arena.inference import Predictor, assemble
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.checkpoint import save_checkpoint

TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>\n<|im_start|>assistant\n")
BUDGET = {"max_length": 160, "split": [0.3, 0.35, 0.35], "head_ratio": 0.5, "min_field_tokens": 8}
CHECKPOINTS = {  # name: (twin family, spec overrides, model keywords, seed of the head noise)
    "fusion2": ("qwen2", {}, {"n_classes": 2, "head": "fusion", "pooling": "mean"}, 0),
    "linear2": ("qwen2", {"seed": 1}, {"n_classes": 2, "head": "linear", "pooling": "last"}, 1),
    "left3": (
        "llama",
        {"padding_side": "left", "pad_token": "eos"},
        {"n_classes": 3, "head": "mlp", "pooling": "last"},
        2,
    ),
}


def build_checkpoint(name: str, root: Path, cache: Path) -> Path:
    family, overrides, model_kw, seed = CHECKPOINTS[name]
    spec = BackboneSpec(
        name=f"tiny_{family}", kind="decoder", arch=TINY_ARCH[family], random_init=True, **overrides
    )
    if model_kw["head"] == "fusion":
        model_kw = {**model_kw, "n_features": len(FEATURE_NAMES)}
    model = build_preference_model(spec, cache_dir=cache, **model_kw).eval()
    config = {
        "backbone": spec.to_dict(),
        "model": model_kw,
        "template": asdict(TEMPLATE),
        "data": {
            "budget": {"_target_": "arena.data.Budget", **BUDGET},
            "n_classes": model_kw["n_classes"],
        },
    }
    if model_kw.get("n_features"):
        train = make_synthetic(64, seed=11)
        config["feature_normalizer"] = FeatureNormalizer.fit(compute_features(train)).to_dict()
    tokenizer = load_tokenizer(spec, cache)
    spread_out(Predictor.from_loaded(model, tokenizer, config), seed)
    return save_checkpoint(model, tokenizer, config, root / name)


def spread_out(p: Predictor, seed: int) -> None:
    """A random head predicts one class everywhere or ~uniform: re-draw its last layer so that the
    logits of sample rows are centred with a spread of about 1.5."""
    last = p.model.head.net[-1]
    torch.manual_seed(seed)
    with torch.no_grad():
        last.weight.normal_()
        last.bias.zero_()
        df = make_synthetic(48, seed=12)
        logits = torch.from_numpy(
            assemble([p.local_logits(p.encode(df), np.arange(48))], 48, p.n_classes)
        )
        last.weight.mul_(1.5 / logits.std(0).mean())
        last.bias.sub_(logits.mean(0) * 1.5 / logits.std(0).mean())


def write_wsdm(df: pd.DataFrame, path: Path, join_turns: bool = True) -> Path:
    """WSDM layout: plain-text cells (or turn lists, which the reader also takes) and ``winner``."""
    names = np.array(["model_a", "model_b", "tie"])
    frame = df[["id", "prompt", "response_a", "response_b"]].copy()
    for c in ("prompt", "response_a", "response_b"):
        frame[c] = frame[c].map("\n".join) if join_turns else frame[c].map(list)
    frame["winner"] = names[df["label"].to_numpy()]
    frame.to_parquet(path)
    return path


def write_lmsys_test(df: pd.DataFrame, path: Path) -> Path:
    """Unlabeled LMSYS layout: JSON-encoded turn lists, one ``null`` turn."""
    frame = df[["id", "prompt", "response_a", "response_b"]].copy()
    for c in ("prompt", "response_a", "response_b"):
        frame[c] = frame[c].map(json.dumps)
    frame.loc[0, "response_b"] = json.dumps([None] * len(df["prompt"].iloc[0]))
    frame.to_csv(path, index=False)
    return path

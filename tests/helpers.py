"""Shared by the inference tests: tiny checkpoints built through the library, test files in the
WSDM and LMSYS layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from arena.data.feature_sets import FeatureNormalizer
from arena.data.features import FEATURE_NAMES, compute_features
from arena.data.format import Budget, Template
from arena.data.schema import COLUMNS, TEXT_COLUMNS
from arena.data.synthetic import make_synthetic
from arena.inference import Predictor, assemble
from arena.lit import PreferenceDataModule
from arena.models import (
    TINY_ARCH,
    BackboneSpec,
    CheckpointSpec,
    ModelOptions,
    build_preference_model,
    load_tokenizer,
)
from arena.models.checkpoint import save_checkpoint

TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>\n<|im_start|>assistant\n")
BUDGET = {"max_length": 160, "split": (0.3, 0.35, 0.35), "head_ratio": 0.5, "min_field_tokens": 8}
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
    normalizer = None
    if model_kw.get("n_features"):
        train = make_synthetic(64, seed=11)
        normalizer = FeatureNormalizer.fit(compute_features(train)).to_dict()
    ckpt = CheckpointSpec(
        spec, ModelOptions(**model_kw), TEMPLATE, Budget(**BUDGET), feature_normalizer=normalizer
    )
    tokenizer = load_tokenizer(spec, cache)
    spread_out(Predictor.from_loaded(model, tokenizer, ckpt), seed)
    return save_checkpoint(model, tokenizer, ckpt, root / name)


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
    ckpt = CheckpointSpec(
        spec, ModelOptions(**model_kw), TEMPLATE, Budget(**BUDGET), run={"seed": seed}
    )
    tokenizer = load_tokenizer(spec, cache)
    spread_out(Predictor.from_loaded(model, tokenizer, ckpt), seed)
    return save_checkpoint(model, tokenizer, ckpt, root / f"fold{seed}_r{r}")


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_decoder(family: str, root: Path, chat_template: str | None) -> Path:
    """A tiny random causal LM + its twin tokenizer saved as a local model dir."""
    pad = "eos" if family == "llama" else "existing"  # Llama 3 has no pad token
    spec = BackboneSpec(
        name=f"tiny_{family}",
        kind="decoder",
        arch=TINY_ARCH[family],
        random_init=True,
        pad_token=pad,
    )
    tokenizer = load_tokenizer(spec, root / "cache")
    if chat_template:
        tokenizer.chat_template = chat_template
    arch = {k: v for k, v in TINY_ARCH[family].items() if k != "model_type"}
    torch.manual_seed(0)
    model_cls, config_cls = {
        "qwen2": (Qwen2ForCausalLM, Qwen2Config),
        "llama": (LlamaForCausalLM, LlamaConfig),
    }[family]
    model = model_cls(config_cls(**arch))
    target = root / f"{family}_chat" if chat_template else root / f"{family}_base"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


DATAMODULE_TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>")


def datamodule(tokenizer, tmp_path: Path, **kw) -> PreferenceDataModule:
    args = dict(
        synthetic={"n": 300, "seed": 1},
        fold=0,
        n_folds=5,
        batch_size=8,
        budget=Budget(max_length=96, min_field_tokens=4),
        cache_dir=str(tmp_path),
    )
    args.update(kw)
    return PreferenceDataModule(tokenizer, DATAMODULE_TEMPLATE, **args)


def lmsys_test_file(tmp_path: Path, n: int = 60, plain_row: int | None = None) -> Path:
    """An unlabeled LMSYS test csv (Kaggle test.csv) whose row ``plain_row`` has a plain prompt."""
    path = write_lmsys_test(make_synthetic(n, seed=3, n_turns_max=2), tmp_path / "test.csv")
    if plain_row is not None:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.loc[plain_row, "prompt"] = "a prompt pasted as plain text"
        frame.to_csv(path, index=False)
    return path


def assert_pairs(df: pd.DataFrame) -> None:
    """Everything schema.py promises about a pair table."""
    assert list(df.columns) == list(COLUMNS)
    assert df["id"].is_unique and all(isinstance(i, str) and i for i in df["id"])
    for col in ("id", "model_a", "model_b", "language", "source"):
        assert all(isinstance(x, str) and x and x.encode("utf-8") for x in df[col])
    for p, a, b in zip(*(df[c] for c in TEXT_COLUMNS), strict=True):
        assert len(p) == len(a) == len(b) >= 1
        for turn in (*p, *a, *b):
            assert isinstance(turn, str)
            turn.encode("utf-8")  # no lone surrogates left
    assert set(df["label"].tolist()) <= {-1, 0, 1, 2} and df["label"].dtype == np.int64
    assert df["fold"].dtype == np.int64
    for soft in df["soft_label"]:
        assert soft is None or (isinstance(soft, np.ndarray) and abs(soft.sum() - 1) < 1e-5)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max(initial=0.0))


WANDB_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0deadbeef"  # 40 hex, like a W&B key


HF_ENV = "hf_EnvTokenAbCdEfGhIjKlMnOpQrStUvWxYz01"


HF_OVERRIDE = "hf_OverrideTokenZyXwVuTsRqPoNmLkJiHg23"


PLAIN_OVERRIDE = "plain-secret-without-any-shape-4711"


SECRETS = (WANDB_KEY, HF_ENV, HF_OVERRIDE, PLAIN_OVERRIDE)


def feature_pairs(prompts: list, a: list, b: list) -> pd.DataFrame:
    return pd.DataFrame({"prompt": prompts, "response_a": a, "response_b": b})

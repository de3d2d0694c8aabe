"""Benchmark inputs: the pair table (the real files' mix or a synthetic heavy-tailed one), model.

table, source = load_table(settings)          # "real:<file names>" or "synthetic"
rows = sample_rows(table, 256, seed=0)
kit = build_kit(settings)                     # tokenizer, formatter, fresh models
data = encode(rows, kit)                      # PairDataset + formatted lengths
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from arena.bench.common import REPO_ROOT, Settings
from arena.data.batching import Collator
from arena.data.dataset import PairArrays, PairDataset
from arena.data.format import Budget, Formatter, Template
from arena.data.readers import read_many
from arena.data.schema import COLUMNS, UNKNOWN, one_hot
from arena.data.tokenize import TokenizedPairs, tokenize_pairs
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.preference import PreferenceModel
from arena.utils.config import register_resolvers

_WORDS = " ".join(
    [
        "the model answer is a clear short long helpful code python list data because we you it",
        "not can should would explain example step first second result value error function user",
        "assistant question think sure here please thanks good better best more less very",
    ]
).split()


def synthetic_table(n: int, seed: int) -> pd.DataFrame:
    """A pair table whose field lengths follow a heavy-tailed (log-normal) mix like chat data.

    Prompts have a median of ~20 words, responses ~70 words, with a tail into the thousands.
    """
    rng = np.random.default_rng(seed)
    words = np.asarray(_WORDS)

    def text(median: float) -> str:
        k = int(np.clip(rng.lognormal(np.log(median), 1.0), 1, 3000))
        return " ".join(words[rng.integers(0, len(words), k)])

    rows: dict[str, list[list[str]]] = {c: [] for c in ("prompt", "response_a", "response_b")}
    for _ in range(n):
        rows["prompt"].append([text(20)])
        rows["response_a"].append([text(70)])
        rows["response_b"].append([text(70)])
    return _pair_table([f"syn-{i}" for i in range(n)], rows, rng.integers(0, 2, n))


def _pair_table(ids: list[str], text: dict[str, list[Any]], labels: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    table = pd.DataFrame({"id": pd.Series(ids, dtype=object)})
    for column, values in text.items():
        table[column] = pd.Series(values, dtype=object)
    table["label"] = np.asarray(labels, dtype=np.int64)
    table["soft_label"] = pd.Series([None] * n, dtype=object)
    for column in ("model_a", "model_b", "language"):
        table[column] = UNKNOWN
    table["source"] = "synthetic"
    table["fold"] = -1
    return table[list(COLUMNS)]


def real_files(data_dir: Path) -> list[Path]:
    """The pair files of the shared data folder: HH parquet files in ``wsdm/`` and LMSYS-layout
    csv files in ``lmsys/`` (empty when the folder is absent)."""
    data_dir = Path(data_dir)
    return sorted(data_dir.glob("wsdm/*.parquet")) + sorted(data_dir.glob("lmsys/*.csv"))


@functools.lru_cache(maxsize=4)
def _read_real(files: tuple[Path, ...]) -> pd.DataFrame:
    """The files' pairs; ties (in the LMSYS files) are left out: the bench models have 2 classes."""
    table = read_many(list(files))[0]
    return table.loc[table["label"].isin([0, 1]).to_numpy()].reset_index(drop=True)


def load_table(settings: Settings, n_synthetic: int = 4000) -> tuple[pd.DataFrame, str]:
    """The real pairs (:func:`real_files`) when the shared data is present, else a synthetic
    heavy-tailed table."""
    files = real_files(settings.data_dir)
    if files:
        return _read_real(tuple(files)), "real:" + ",".join(f.name for f in files)
    return synthetic_table(n_synthetic, settings.seed), "synthetic"


def sample_rows(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows drawn without replacement (repeated, with fresh ids, when ``n > len``)."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(table))
    order = np.concatenate([rng.permutation(len(table)) for _ in range(reps)])[:n]
    out = table.iloc[order].reset_index(drop=True)
    if reps > 1:
        out["id"] = [f"{i}#{k}" for k, i in enumerate(out["id"])]
    return out


@dataclass
class ModelKit:
    """Tokenizer, template and a base model that every variant copies.

    Dropout is switched off in the base model so that every training loop is deterministic and
    variants can be checked for identical losses.
    """

    spec: BackboneSpec
    template: Template
    tokenizer: Any
    base: PreferenceModel

    def new_model(self) -> PreferenceModel:
        """A fresh copy of the base model (same weights every time)."""
        return copy.deepcopy(self.base)

    def formatter(self, max_length: int) -> Formatter:
        tok = self.tokenizer
        budget = Budget(max_length=max_length)
        return Formatter(
            self.template, budget, lambda s: tok(s, add_special_tokens=False)["input_ids"]
        )

    def collator(self, multiple: int = 8) -> Collator:
        return Collator(self.tokenizer.pad_token_id, self.tokenizer.padding_side, multiple)


def backbone_conf(name: str) -> tuple[BackboneSpec, Template]:
    """Spec and template of ``conf/backbone/<name>.yaml`` as Hydra composes it (its family base
    and resolvers included)."""
    register_resolvers()
    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(f"backbone/{name}").backbone
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    return BackboneSpec.from_dict(strip(plain["spec"])), Template(**strip(plain["template"]))


def tiny_bert() -> tuple[BackboneSpec, Template]:
    """The tiny random BERT twin with MiniLM's cross-encoder template."""
    spec = BackboneSpec(name="tiny_bert", kind="encoder", arch=TINY_ARCH["bert"], random_init=True)
    _, template = backbone_conf("minilm")
    return spec, template


def build_kit(settings: Settings) -> ModelKit:
    """Tokenizer and base model of ``settings.backbone`` (``minilm`` or ``tiny``)."""
    if settings.backbone == "minilm":
        spec, template = backbone_conf("minilm")
    elif settings.backbone == "tiny":
        spec, template = tiny_bert()
    else:
        raise ValueError(f"backbone={settings.backbone!r}; expected minilm or tiny")
    cache = Path(settings.work_dir)
    tokenizer = load_tokenizer(spec, cache)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        base = build_preference_model(spec, n_classes=2, cache_dir=cache, head_dropout=0.0)
    for module in base.modules():  # BERT's SDPA attention reads its dropout's p as well
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return ModelKit(spec, template, tokenizer, base.train())


@dataclass(frozen=True)
class Encoded:
    """Rows ready for batching: dataset items and their formatted lengths (n,)."""

    dataset: PairDataset
    lengths: np.ndarray
    tokens: TokenizedPairs


def encode(rows: pd.DataFrame, kit: ModelKit, max_length: int) -> Encoded:
    """Tokenize and format ``rows`` (plain view) for ``kit``'s model."""
    tokens = tokenize_pairs(rows, kit.tokenizer)
    labels = rows["label"].to_numpy(dtype=np.int64)
    arrays = PairArrays(labels=labels, targets=one_hot(labels, 2))
    dataset = PairDataset(tokens, arrays, kit.formatter(max_length), "plain")
    return Encoded(dataset, dataset.row_lengths(), tokens)


def lengths_at(data: Encoded, kit: ModelKit, max_length: int) -> np.ndarray:
    """(n,) formatted lengths of the same rows under another ``max_length``."""
    formatter = kit.formatter(max_length)
    return np.array([formatter.length(*data.tokens.fields(i)) for i in range(len(data.tokens))])

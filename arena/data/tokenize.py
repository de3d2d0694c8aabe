"""Turn-level tokenization of a pair table, cached on disk.

The cache key is everything that changes the ids: the text content of every row and the tokenizer
(its serialised vocabulary and rules). Template and budget are applied later by
:class:`arena.data.format.Formatter`, on ids, so they need no key: changing them re-uses the cache.
A second run over the same data and tokenizer loads a ``.npz`` and never calls the tokenizer.

Streamed preparation (:func:`tokenize_chunks`) takes the chunks of
:func:`arena.data.chunks.iter_pairs` and caches every chunk under its own key, so the raw text of
one chunk is held at a time and only the compact ids (4 bytes a token) of the whole file::

    tokens = tokenize_chunks((c.table for c in iter_pairs(path, chunk_rows=4096)), tok, cache)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.data.schema import TEXT_COLUMNS

_CACHE_VERSION = "1"


@dataclass(frozen=True)
class TokenizedPairs:
    """Token ids of every turn of every field, flattened.

    Row ``i`` has ``turns[i]`` turns in each of its three fields; its pieces are stored in the
    order prompt turns, A turns, B turns, starting at piece ``3 * cumsum(turns)[i-1]``.

    Attributes:
        ids: (total_tokens,) int32.
        offsets: (n_pieces + 1,) int64 start of every piece in ``ids``.
        turns: (n_rows,) int32 turns per field.
    """

    ids: np.ndarray
    offsets: np.ndarray
    turns: np.ndarray

    def __post_init__(self) -> None:
        starts = np.zeros(len(self.turns) + 1, dtype=np.int64)
        np.cumsum(3 * self.turns.astype(np.int64), out=starts[1:])
        object.__setattr__(self, "_row_start", starts)

    def __len__(self) -> int:
        return len(self.turns)

    def fields(self, i: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per-turn ids of (prompt, A, B) of row ``i``."""
        n, s = int(self.turns[i]), int(self._row_start[i])  # type: ignore[attr-defined]
        pieces = [self.ids[self.offsets[p] : self.offsets[p + 1]] for p in range(s, s + 3 * n)]
        return pieces[:n], pieces[n : 2 * n], pieces[2 * n :]

    def save(self, path: Path) -> None:
        """Write atomically (temp file in the same folder, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=self.ids, offsets=self.offsets, turns=self.turns)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TokenizedPairs:
        with np.load(path, allow_pickle=False) as z:
            return cls(ids=z["ids"], offsets=z["offsets"], turns=z["turns"])


def _pieces(df: pd.DataFrame) -> Iterator[str]:
    for p, a, b in zip(*(df[c] for c in TEXT_COLUMNS), strict=True):
        yield from p
        yield from a
        yield from b


def content_hash(df: pd.DataFrame) -> str:
    """Hash of the ids and every text turn of a pair table."""
    h = hashlib.sha256()
    for i, n in zip(df["id"], df["prompt"].map(len), strict=True):
        h.update(f"{i}\x1f{n}\x1e".encode())
    for text in _pieces(df):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:24]


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of a tokenizer's full serialised state (vocabulary, merges, normaliser)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else repr(tokenizer)
    return hashlib.sha256(state.encode()).hexdigest()[:24]


def tokenize_pairs(df: pd.DataFrame, tokenizer: Any, batch_size: int = 512) -> TokenizedPairs:
    """Tokenize every turn of every field without special tokens.

    Args:
        df: pair table; ``prompt``, ``response_a``, ``response_b`` hold equally long turn lists.
        tokenizer: a Hugging Face tokenizer (fast tokenizers batch in Rust).
        batch_size: texts per tokenizer call. Each call's ids exist as Python int lists (and Rust
            encodings) until converted; 512 texts keep that transient small (peak resident
            memory over 4096 HH rows: 14 MB vs 65 MB at 4096 texts per call, same speed; see
            ``python -m arena.bench only=scaling``).
    """
    turns = df["prompt"].map(len).to_numpy(dtype=np.int32)
    texts = list(_pieces(df))
    lengths = np.empty(len(texts), dtype=np.int64)
    chunks: list[np.ndarray] = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(texts[s : s + batch_size], add_special_tokens=False)["input_ids"]
        for j, ids in enumerate(enc):
            lengths[s + j] = len(ids)
            chunks.append(np.asarray(ids, dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return TokenizedPairs(ids=ids, offsets=offsets, turns=turns)


def cached_tokenize(df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> TokenizedPairs:
    """:func:`tokenize_pairs` through an on-disk cache keyed by data and tokenizer."""
    if cache_dir is None:
        return tokenize_pairs(df, tokenizer)
    key = f"v{_CACHE_VERSION}-{content_hash(df)}-{tokenizer_hash(tokenizer)}"
    path = Path(cache_dir) / "tokens" / f"{key}.npz"
    if path.exists():
        return TokenizedPairs.load(path)
    tokens = tokenize_pairs(df, tokenizer)
    tokens.save(path)
    return tokens


def concat_tokens(parts: Sequence[TokenizedPairs]) -> TokenizedPairs:
    """The rows of ``parts`` one after the other, as one :class:`TokenizedPairs`."""
    if not parts:
        return TokenizedPairs(
            np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)
        )
    shifts = np.cumsum([0] + [len(p.ids) for p in parts[:-1]])
    offsets = [parts[0].offsets[:1]]
    offsets += [p.offsets[1:] + shift for p, shift in zip(parts, shifts, strict=True)]
    return TokenizedPairs(
        ids=np.concatenate([p.ids for p in parts]),
        offsets=np.concatenate(offsets).astype(np.int64),
        turns=np.concatenate([p.turns for p in parts]).astype(np.int32),
    )


def tokenize_chunks(
    tables: Iterable[pd.DataFrame], tokenizer: Any, cache_dir: Path | None
) -> TokenizedPairs:
    """:func:`cached_tokenize` of each chunk of a table (one cache entry per chunk), joined.

    Args:
        tables: consecutive chunks of one pair table (e.g. from ``iter_pairs``); each is
            released once tokenized, so only one chunk's text is held at a time.
        tokenizer: as in :func:`tokenize_pairs`.
        cache_dir: token cache (None tokenizes every chunk).

    Returns:
        the ids of every row of every chunk, in order (the same as ``cached_tokenize`` of the
        concatenated table).
    """
    return concat_tokens([cached_tokenize(t, tokenizer, cache_dir) for t in tables])

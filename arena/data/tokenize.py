"""Turn-level tokenization of a pair table, cached on disk.

The cache key is everything that changes the ids: the text content of every row and the tokenizer
(its serialised vocabulary and rules). Template and budget are applied later by
:class:`arena.data.format.Formatter`, on ids, so they need no key: changing them re-uses the cache.
A second run over the same data and tokenizer maps the cached arrays (a folder of ``.npy``
files) and never calls the tokenizer; mapped ids are read from the page cache as rows are used,
not held in the process's own memory.

Streamed preparation (:func:`tokenize_chunks`) takes the chunks of
:func:`arena.data.chunks.iter_pairs`, caches every chunk under its own key and appends its ids to
a file, so the raw text and the ids of one chunk are held at a time, whatever the file's size::

    tokens = tokenize_chunks((c.table for c in iter_pairs(path, chunk_rows=4096)), tok, cache)
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.data.schema import TEXT_COLUMNS
from arena.utils.io import atomic_dir

_CACHE_VERSION = "2"
_ARRAYS = ("ids", "offsets", "turns")


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
        """Write a folder of ``.npy`` files atomically (built beside it, then renamed)."""
        with atomic_dir(path, replace=False) as tmp:  # another process may publish it first
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, path: Path) -> TokenizedPairs:
        """Map a saved folder read-only (nothing is read until rows are used)."""
        return cls(*(_map(path / f"{name}.npy") for name in _ARRAYS))


def _map(path: Path) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return array if array.size else np.array(array)  # an empty file cannot be mapped


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
    path = Path(cache_dir) / "tokens" / key
    if path.is_dir():
        return TokenizedPairs.load(path)
    tokens = tokenize_pairs(df, tokenizer)
    tokens.save(path)
    return tokens


class TokenStore:
    """Appends tokenized chunks to files as they come; :meth:`close` maps the whole.

    The ids go to disk at once; per row only the piece offsets and turn counts (a few percent
    of the ids) are kept until :meth:`close`. The folder is a temporary one, removed when closed:
    the mapped arrays stay readable as long as they are referenced.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=".arena-tokens-", dir=folder))
        self._ids = (self.folder / "ids.int32").open("wb")
        self._written = 0
        self._offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self._turns: list[np.ndarray] = []

    def append(self, tokens: TokenizedPairs) -> None:
        """Write one chunk's ids and remember its offsets, shifted past what is written."""
        self._ids.write(np.ascontiguousarray(tokens.ids, dtype="<i4").tobytes())
        self._offsets.append(np.asarray(tokens.offsets[1:], dtype=np.int64) + self._written)
        self._turns.append(np.asarray(tokens.turns, dtype=np.int32))
        self._written += len(tokens.ids)

    def close(self) -> TokenizedPairs:
        """Every appended row, in order, with the ids mapped from disk."""
        self._ids.close()
        raw = self.folder / "ids.int32"
        ids = (
            np.memmap(raw, dtype="<i4", mode="r", shape=(self._written,))
            if self._written
            else np.zeros(0, dtype=np.int32)
        )
        shutil.rmtree(self.folder)  # the mapping keeps the data while it is referenced
        offsets = np.concatenate(self._offsets)
        turns = np.concatenate(self._turns) if self._turns else np.zeros(0, dtype=np.int32)
        return TokenizedPairs(ids=ids, offsets=offsets, turns=turns)


def tokenize_chunks(
    tables: Iterable[pd.DataFrame],
    tokenizer: Any,
    cache_dir: Path | None,
    on_chunk: Callable[[TokenizedPairs], None] | None = None,
) -> TokenizedPairs:
    """:func:`cached_tokenize` of each chunk of a table (one cache entry per chunk), joined.

    Args:
        tables: consecutive chunks of one pair table (e.g. from ``iter_pairs``); each is
            released once tokenized, so only one chunk's text and ids are held at a time.
        tokenizer: as in :func:`tokenize_pairs`.
        cache_dir: token cache (None tokenizes every chunk); the joined ids are written to a
            temporary file there (the system's temporary folder without a cache).
        on_chunk: called with each chunk's tokens while they are in memory (e.g. to measure
            formatted lengths without reading the ids back).

    Returns:
        the ids of every row of every chunk, in order (the same as ``cached_tokenize`` of the
        concatenated table), mapped from disk.
    """
    store = TokenStore(None if cache_dir is None else _mkdir(Path(cache_dir) / "tokens"))
    for table in tables:
        tokens = cached_tokenize(table, tokenizer, cache_dir)
        if on_chunk is not None:
            on_chunk(tokens)
        store.append(tokens)
    return store.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Hand-crafted text features of a pair table, laid out so that an A/B swap is a permutation:
the ``arena`` set of :mod:`arena.data.feature_sets` (``data.features=arena``), and the text
helpers the ``seed`` set (:mod:`arena.data.seed_features`) shares.

Columns come in four blocks (see :data:`FEATURE_NAMES`):

1. *shared*: statistics of the prompt and symmetric pair statistics (``ab_jaccard``); a swap
   leaves them unchanged;
2. *A*: ``a_<stat>`` for every stat in :data:`TEXT_STATS` plus ``a_prompt_jaccard``;
3. *B*: the same stats, same order, for response B; a swap exchanges blocks 2 and 3;
4. *antisymmetric*: ``diff_<stat>`` (A minus B; on ``log_chars`` that is the log length ratio)
   and ``rel_chars``/``rel_words`` = ``(a - b) / (a + b + 1)``; a swap negates them.

:func:`swap_permutation` reads that from the names and :func:`swap_features` applies it, so
``compute_features(swap(df)) == swap_features(compute_features(df))`` bit for bit. Counts go
through ``log1p``.

Definitions, chosen for speed: character counts come from one UTF-8 byte histogram per text
(``np.bincount``), so character classes are ASCII (``upper_ratio`` = ASCII upper-case over ASCII
letters) plus common full-width punctuation; words are the tokens left after splitting on
whitespace and ASCII punctuation, lower-cased for the Jaccard word sets; the few markdown
regexes run only on rows that hold their trigger byte and mean the same under Python ``re`` and
RE2 (pyarrow strings). Turns are joined with a newline that is not counted.

Usage::

    x = compute_features(df)                  # (n, len(FEATURE_NAMES)) float32
    np.testing.assert_array_equal(compute_features(swap(df)), swap_features(x))

Standardising them (``FeatureNormalizer``) and choosing a set: :mod:`arena.data.feature_sets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

TEXT_STATS: Final[tuple[str, ...]] = (
    "log_chars",
    "n_turns",
    "log_words",
    "log_newlines",
    "log_punct",
    "log_digits",
    "log_headers",
    "log_bullets",
    "log_bold",
    "log_code_fences",
    "log_backticks",
    "log_questions",
    "log_bracket_imbalance",
    "upper_ratio",
)
_RESPONSE_STATS: Final = (*TEXT_STATS, "prompt_jaccard")
_DIFF_STATS: Final = (
    "log_chars",
    "log_words",
    "log_newlines",
    "log_headers",
    "log_bullets",
    "log_bold",
    "log_code_fences",
    "upper_ratio",
    "prompt_jaccard",
)
SHARED_NAMES: Final = (*(f"prompt_{s}" for s in TEXT_STATS), "ab_jaccard")
A_NAMES: Final = tuple(f"a_{s}" for s in _RESPONSE_STATS)
B_NAMES: Final = tuple(f"b_{s}" for s in _RESPONSE_STATS)
ANTI_NAMES: Final = (*(f"diff_{s}" for s in _DIFF_STATS), "rel_chars", "rel_words")
FEATURE_NAMES: Final[tuple[str, ...]] = (*SHARED_NAMES, *A_NAMES, *B_NAMES, *ANTI_NAMES)

_N_SHARED, _N_SIDE, _N_ANTI = len(SHARED_NAMES), len(A_NAMES), len(ANTI_NAMES)
SHARED_SLICE: Final = slice(0, _N_SHARED)
A_SLICE: Final = slice(_N_SHARED, _N_SHARED + _N_SIDE)
B_SLICE: Final = slice(A_SLICE.stop, A_SLICE.stop + _N_SIDE)
ANTI_SLICE: Final = slice(B_SLICE.stop, B_SLICE.stop + _N_ANTI)

# counts that need a regex, each run only on rows holding a byte in [lo, hi) (its trigger)
_REGEX_COUNTS: Final = {
    "headers": (r"(?m)^ {0,3}#{1,6} ", (35, 36)),
    "bullets": (r"(?m)^[ \t]*(?:[-*+•]|[0-9]+[.)])[ \t]", (0, 256)),
    "bold": (r"\*\*[^*\n]+\*\*", (42, 43)),
    "fences": (r"```", (96, 97)),
    "wide_punct": (r"[。，、；：！…“”‘’（）《》？]", (128, 256)),
    "wide_questions": (r"？", (128, 256)),
}
_ASCII_PUNCT: Final = bytes([*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)])
_PUNCT_TO_SPACE: Final = bytes.maketrans(_ASCII_PUNCT, b" " * len(_ASCII_PUNCT))


def join_turns(cells: Iterable[Any]) -> tuple[list[str], np.ndarray]:
    """Each cell (list of turns, a bare string or None) -> one text; also the turn counts."""
    texts: list[str] = []
    turns: list[int] = []
    for cell in cells:
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            parts: list[str] = []
        elif isinstance(cell, str):
            parts = [cell]
        else:
            parts = ["" if t is None else str(t) for t in cell]
        texts.append("\n".join(parts))
        turns.append(len(parts))
    return texts, np.asarray(turns, dtype=np.float64)


def byte_histogram(encoded: list[bytes]) -> np.ndarray:
    """(n, 256) float64 counts of every UTF-8 byte value per text."""
    out = np.zeros((len(encoded), 256), dtype=np.float64)
    for i, b in enumerate(encoded):
        out[i] = np.bincount(np.frombuffer(b, dtype=np.uint8), minlength=256)
    return out


def regex_counts(
    texts: list[str],
    hist: np.ndarray,
    patterns: Mapping[str, tuple[str, tuple[int, int]]] = _REGEX_COUNTS,
) -> dict[str, np.ndarray]:
    """Match counts of ``patterns`` (name -> (regex, trigger byte range), as in
    :data:`_REGEX_COUNTS`); a row without a byte in the trigger range counts 0."""
    out: dict[str, np.ndarray] = {}
    s = pd.Series(texts, dtype="str")
    for name, (pattern, (lo, hi)) in patterns.items():
        rows = hist[:, lo:hi].sum(1) > 0
        counts = np.zeros(len(texts), dtype=np.float64)
        if rows.any():
            counts[rows] = s[rows].str.count(pattern).to_numpy(dtype=np.float64, na_value=0.0)
        out[name] = counts
    return out


def _text_stats(
    texts: list[str], hist: np.ndarray, n_words: np.ndarray, n_turns: np.ndarray
) -> np.ndarray:
    """(n, len(TEXT_STATS)) float64 statistics of joined texts, in :data:`TEXT_STATS` order."""
    h = hist
    rx = regex_counts(texts, hist)
    raw = {
        "log_chars": h.sum(1) - h[:, 0x80:0xC0].sum(1),  # minus UTF-8 continuation bytes
        "log_words": n_words,
        # turns are joined with "\n"; count only the line breaks written inside turns
        "log_newlines": np.maximum(h[:, 10] - np.maximum(n_turns - 1.0, 0.0), 0.0),
        "log_punct": h[:, list(_ASCII_PUNCT)].sum(1) + rx["wide_punct"],
        "log_digits": h[:, 48:58].sum(1),
        "log_headers": rx["headers"],
        "log_bullets": rx["bullets"],
        "log_bold": rx["bold"],
        "log_code_fences": rx["fences"],
        "log_backticks": h[:, 96],
        "log_questions": h[:, 63] + rx["wide_questions"],
        "log_bracket_imbalance": sum(
            np.abs(h[:, ord(o)] - h[:, ord(c)]) for o, c in ("()", "[]", "{}")
        ),
    }
    cols = {name: np.log1p(value) for name, value in raw.items()}
    cols["n_turns"] = n_turns
    upper, lower = h[:, 65:91].sum(1), h[:, 97:123].sum(1)
    cols["upper_ratio"] = upper / np.maximum(upper + lower, 1.0)
    return np.stack([cols[name] for name in TEXT_STATS], axis=1)


def word_sets(encoded: list[bytes]) -> tuple[np.ndarray, list[frozenset[bytes]]]:
    """Word counts (n,) and lower-cased word sets; whitespace and ASCII punctuation split."""
    counts = np.zeros(len(encoded), dtype=np.float64)
    sets: list[frozenset[bytes]] = []
    for i, b in enumerate(encoded):
        tokens = b.lower().translate(_PUNCT_TO_SPACE).split()
        counts[i] = len(tokens)
        sets.append(frozenset(tokens))
    return counts, sets


def jaccard(left: Sequence[frozenset[bytes]], right: Sequence[frozenset[bytes]]) -> np.ndarray:
    """(n,) |L & R| / |L | R| per row; 0 when both sets are empty."""
    out = np.zeros(len(left), dtype=np.float64)
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        inter = len(a & b)
        union = len(a) + len(b) - inter
        out[i] = inter / union if union else 0.0
    return out


def compute_features(df: pd.DataFrame) -> np.ndarray:
    """Engineered features of every row of a pair table.

    Args:
        df: pair table with ``prompt``, ``response_a``, ``response_b`` (lists of turns).

    Returns:
        (n, len(FEATURE_NAMES)) float32, columns in :data:`FEATURE_NAMES` order.
    """
    blocks: dict[str, np.ndarray] = {}
    words: dict[str, list[frozenset[bytes]]] = {}
    for col in ("prompt", "response_a", "response_b"):
        texts, n_turns = join_turns(df[col])
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
        n_words, words[col] = word_sets(encoded)
        blocks[col] = _text_stats(texts, byte_histogram(encoded), n_words, n_turns)
    side = {
        c: np.column_stack([blocks[c], jaccard(words["prompt"], words[c])])
        for c in ("response_a", "response_b")
    }
    a, b = side["response_a"], side["response_b"]
    idx = [_RESPONSE_STATS.index(s) for s in _DIFF_STATS]
    rel = []
    for stat in ("log_chars", "log_words"):  # rel = (a - b) / (a + b + 1) on the raw counts
        j = _RESPONSE_STATS.index(stat)
        u, v = np.expm1(a[:, [j]]), np.expm1(b[:, [j]])
        rel.append((u - v) / (u + v + 1.0))
    shared = np.column_stack([blocks["prompt"], jaccard(words["response_a"], words["response_b"])])
    out = np.concatenate([shared, a, b, a[:, idx] - b[:, idx], *rel], axis=1)
    return out.astype(np.float32)


def swap_permutation(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """How an A/B swap acts on a feature layout, read from its names.

    ``a_<x>`` and ``b_<x>`` exchange places, ``diff_*`` and ``rel_*`` (A minus B) change sign,
    every other column is shared and stays.

    Args:
        names: the layout's column names.

    Returns:
        perm (F,) int64 and sign (F,) float32: the swapped features are ``x[..., perm] * sign``.

    Raises:
        ValueError: an ``a_<x>`` without its ``b_<x>`` or the other way round.
    """
    index = {name: i for i, name in enumerate(names)}
    perm = np.arange(len(names))
    sign = np.ones(len(names), dtype=np.float32)
    for i, name in enumerate(names):
        side, _, stat = name.partition("_")
        if side in ("a", "b"):
            other = f"{'b' if side == 'a' else 'a'}_{stat}"
            if other not in index:
                raise ValueError(f"feature {name!r} has no swap partner {other!r}")
            perm[i] = index[other]
        elif side in ("diff", "rel"):
            sign[i] = -1.0
    return perm, sign


_SWAP_PERM, _SWAP_SIGN = swap_permutation(FEATURE_NAMES)


def swap_features(x: np.ndarray) -> np.ndarray:
    """Features of the A/B-swapped pairs: exchange the A and B blocks, negate the diffs.

    Args:
        x: (..., len(FEATURE_NAMES)) features.

    Returns:
        Same shape and dtype; ``swap_features(swap_features(x)) == x``.
    """
    return (x[..., _SWAP_PERM] * _SWAP_SIGN).astype(x.dtype, copy=False)

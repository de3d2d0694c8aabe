"""The ``seed`` feature set (``data.features=seed``): the 57 text statistics per pair that the
seed solution (a WSDM Cup Gemma2-9B QLoRA classifier) fused into its head.

Columns (see :data:`SEED_FEATURE_NAMES`), laid out like the ``arena`` set so that an A/B swap is
the permutation :func:`arena.data.features.swap_permutation` reads from the names:

1. *prompt* (7, shared): ``prompt_<stat>`` for :data:`PROMPT_STATS`;
2. *A* (18): ``a_<stat>`` for every stat in :data:`SEED_TEXT_STATS`;
3. *B* (18): the same for response B;
4. *A - B* (14): ``diff_<stat>`` for :data:`DIFF_STATS` (on a ``log_*`` count that is the log
   ratio of the counts + 1) and ``rel_chars``/``rel_words`` = ``(a - b) / (a + b + 1)``.

Definitions (the helpers of :mod:`arena.data.features`): a field's turns are joined with a
newline; ``chars`` counts code points; words are what is left after splitting on whitespace and
ASCII punctuation; ``lines`` are the joined text's lines (0 for an empty text); headers,
list items, bold spans and code fences are markdown regexes (a code block is two fences);
``links`` counts ``http://`` and ``https://``; punctuation is ASCII plus common full-width
marks, and ``?``/``!`` count their full-width forms too; ratios divide by the character count
(``upper_ratio``: ASCII upper-case over ASCII letters, ``unique_word_ratio``: distinct
lower-cased words over words). Counts go through ``log1p``.

    x = compute_seed_features(df)  # (n, 57) float32, columns in SEED_FEATURE_NAMES order
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from arena.data.features import (
    _ASCII_PUNCT,
    _REGEX_COUNTS,
    byte_histogram,
    join_turns,
    regex_counts,
    word_sets,
)

SEED_TEXT_STATS: Final[tuple[str, ...]] = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_headers",
    "log_list_items",
    "log_code_blocks",
    "log_bold",
    "log_links",
    "log_punct",
    "log_digits",
    "log_questions",
    "log_exclamations",
    "upper_ratio",
    "digit_ratio",
    "punct_ratio",
    "newline_ratio",
    "unique_word_ratio",
    "log_chars_per_word",
)
PROMPT_STATS: Final = (
    "log_chars",
    "log_words",
    "log_lines",
    "n_turns",
    "log_questions",
    "upper_ratio",
    "unique_word_ratio",
)
DIFF_STATS: Final = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_headers",
    "log_list_items",
    "log_code_blocks",
    "log_bold",
    "log_punct",
    "upper_ratio",
    "newline_ratio",
    "unique_word_ratio",
    "log_chars_per_word",
)
SEED_FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"prompt_{s}" for s in PROMPT_STATS),
    *(f"a_{s}" for s in SEED_TEXT_STATS),
    *(f"b_{s}" for s in SEED_TEXT_STATS),
    *(f"diff_{s}" for s in DIFF_STATS),
    "rel_chars",
    "rel_words",
)

_SEED_REGEX: Final = {
    **_REGEX_COUNTS,
    "links": (r"https?://", (58, 59)),  # trigger ":"
    "wide_exclamations": (r"！", (128, 256)),
}


def text_stats(cells: Any) -> dict[str, np.ndarray]:
    """Every stat of :data:`SEED_TEXT_STATS` plus ``n_turns`` of one text column.

    Args:
        cells: a column of turn lists (or bare strings / None).

    Returns:
        name -> (n,) float64, plus the raw ``chars`` and ``words`` counts.
    """
    texts, n_turns = join_turns(cells)
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    h = byte_histogram(encoded)
    words, sets = word_sets(encoded)
    rx = regex_counts(texts, h, _SEED_REGEX)
    chars = h.sum(1) - h[:, 0x80:0xC0].sum(1)  # minus UTF-8 continuation bytes
    newlines = h[:, 10]
    punct = h[:, list(_ASCII_PUNCT)].sum(1) + rx["wide_punct"]
    digits = h[:, 48:58].sum(1)
    upper, lower = h[:, 65:91].sum(1), h[:, 97:123].sum(1)
    per_char = np.maximum(chars, 1.0)
    counts = {
        "chars": chars,
        "words": words,
        "lines": np.where(chars > 0, newlines + 1.0, 0.0),
        "headers": rx["headers"],
        "list_items": rx["bullets"],
        "code_blocks": np.floor(rx["fences"] / 2),
        "bold": rx["bold"],
        "links": rx["links"],
        "punct": punct,
        "digits": digits,
        "questions": h[:, 63] + rx["wide_questions"],
        "exclamations": h[:, 33] + rx["wide_exclamations"],
    }
    out = {f"log_{name}": np.log1p(value) for name, value in counts.items()}
    unique = np.array([len(s) for s in sets], dtype=np.float64)
    out |= {
        "upper_ratio": upper / np.maximum(upper + lower, 1.0),
        "digit_ratio": digits / per_char,
        "punct_ratio": punct / per_char,
        "newline_ratio": newlines / per_char,
        "unique_word_ratio": unique / np.maximum(words, 1.0),
        "log_chars_per_word": np.log1p(chars / np.maximum(words, 1.0)),
        "n_turns": n_turns,
        "chars": chars,
        "words": words,
    }
    return out


def compute_seed_features(df: pd.DataFrame) -> np.ndarray:
    """The seed set of every row of a pair table.

    Args:
        df: pair table with ``prompt``, ``response_a``, ``response_b`` (lists of turns).

    Returns:
        (n, len(SEED_FEATURE_NAMES)) float32, columns in :data:`SEED_FEATURE_NAMES` order.
    """
    p, a, b = (text_stats(df[c]) for c in ("prompt", "response_a", "response_b"))
    columns = [
        *(p[s] for s in PROMPT_STATS),
        *(a[s] for s in SEED_TEXT_STATS),
        *(b[s] for s in SEED_TEXT_STATS),
        *(a[s] - b[s] for s in DIFF_STATS),
        *((a[s] - b[s]) / (a[s] + b[s] + 1.0) for s in ("chars", "words")),
    ]
    return np.stack(columns, axis=1).reshape(len(df), len(SEED_FEATURE_NAMES)).astype(np.float32)

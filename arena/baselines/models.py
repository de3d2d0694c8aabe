"""Non-neural pair baselines: length difference and TF-IDF difference features, each with a
logistic regression trained on both A/B orders and predicting the mean of both orders.

Every feature block is built for a pair and for its swap. Side-dependent blocks are
antisymmetric (swapping negates them); blocks used only for ties (3 classes) are symmetric. The
classifier sees both orders in training (swap augmentation) and predictions average the pair with
the un-swapped prediction of its swap, so ``predict_proba(swap(df)) == swap(predict_proba(df))``
exactly.

    model = TfidfBaseline(C=0.1).fit(train_df, n_classes=2)
    probs = model.predict_proba(val_df)  # (n, 2): P(A wins), P(B wins)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from arena.data.swap import swap_labels, swap_probs

Features = Any  # a (n, d) numpy array or scipy sparse matrix


def field_text(df: pd.DataFrame, column: str) -> list[str]:
    """The turns of one text column joined by newlines: n strings."""
    return ["\n".join(v) if not isinstance(v, str) else v for v in df[column]]


def char_lengths(df: pd.DataFrame, column: str) -> np.ndarray:
    """(n,) float64 characters over all turns of ``column``."""
    return np.array([float(len(t)) for t in field_text(df, column)])


def hard_labels(df: pd.DataFrame) -> np.ndarray:
    """(n,) int64 labels; rows with only a soft label take its argmax.

    Raises:
        ValueError: a row has neither a label nor a soft label.
    """
    labels = df["label"].to_numpy(dtype=np.int64).copy()
    soft = df["soft_label"].to_numpy(dtype=object) if "soft_label" in df else None
    for i in np.flatnonzero(labels < 0):
        if soft is None or soft[i] is None or np.ndim(soft[i]) == 0:
            raise ValueError(f"row {df['id'].iloc[i]!r} has neither a label nor a soft label")
        labels[i] = int(np.argmax(np.asarray(soft[i])))
    return labels


def longer_wins_accuracy(df: pd.DataFrame, labels: np.ndarray) -> float:
    """Accuracy of "the longer response (in characters) wins"; equal lengths score 1/2."""
    diff = char_lengths(df, "response_a") - char_lengths(df, "response_b")
    hit = np.where(diff > 0, labels == 0, labels == 1).astype(float)
    return float(np.where(diff == 0, 0.5, hit).mean()) if len(df) else float("nan")


def _stack(blocks: Sequence[Features]) -> Features:
    if any(sp.issparse(b) for b in blocks):
        return sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr")
    return np.hstack(blocks)


def _vstack(a: Features, b: Features) -> Features:
    return sp.vstack([a, b], format="csr") if sp.issparse(a) else np.vstack([a, b])


class PairBaseline(ABC):
    """Logistic regression on pair features, trained and predicted in both A/B orders.

    Args:
        C: inverse L2 strength of the logistic regression.
        max_iter: lbfgs iterations.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000) -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C, self.max_iter = C, max_iter
        self.n_classes = 0
        self.classifier: LogisticRegression | None = None

    @abstractmethod
    def features(self, df: pd.DataFrame, fit: bool = False) -> tuple[Features, Features]:
        """(n, d) features of the pairs and (n, d) of the swapped pairs.

        Args:
            df: pair table.
            fit: learn what the features need (vocabularies) from ``df`` first.
        """

    def fit(self, df: pd.DataFrame, n_classes: int) -> PairBaseline:
        """Fit on both orders of every training pair.

        Args:
            df: training pair table with labels (or soft labels, whose argmax is used).
            n_classes: 2 or 3 (ties).

        Raises:
            ValueError: no rows, a bad ``n_classes``, or ties with ``n_classes=2``.
        """
        if n_classes not in (2, 3):
            raise ValueError(f"n_classes must be 2 or 3, got {n_classes}")
        if len(df) == 0:
            raise ValueError("no training rows")
        labels = hard_labels(df)
        if labels.max() >= n_classes:
            raise ValueError(f"ties in the training rows: set data.n_classes=3 (got {n_classes})")
        self.n_classes = n_classes
        x, x_swapped = self.features(df, fit=True)
        self.classifier = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.classifier.fit(_vstack(x, x_swapped), np.concatenate([labels, swap_labels(labels)]))
        return self

    def _proba(self, x: Features) -> np.ndarray:
        """(n, C) probabilities with a column for every class, even one absent in training."""
        assert self.classifier is not None, "fit() first"
        out = np.zeros((x.shape[0], self.n_classes))
        out[:, self.classifier.classes_] = self.classifier.predict_proba(x)
        return out

    def predict_both(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, C) probabilities of the pairs as given, and (n, C) of the swapped pairs mapped
        back to the original A/B order."""
        x, x_swapped = self.features(df)
        return self._proba(x), swap_probs(self._proba(x_swapped))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """(n, C) swap-symmetric probabilities: the mean over both orders."""
        plain, back = self.predict_both(df)
        return (plain + back) / 2


class LengthBaseline(PairBaseline):
    """P(A wins) from ``log(1 + chars A) - log(1 + chars B)``, calibrated by a 1-feature logistic
    regression (plus its absolute value for the tie class when there are 3 classes)."""

    def features(self, df: pd.DataFrame, fit: bool = False) -> tuple[np.ndarray, np.ndarray]:
        diff = np.log1p(char_lengths(df, "response_a")) - np.log1p(char_lengths(df, "response_b"))
        x = diff[:, None]  # (n, 1)
        if self.n_classes == 3:
            return np.hstack([x, np.abs(x)]), np.hstack([-x, np.abs(x)])
        return x, -x


class TfidfBaseline(PairBaseline):
    """TF-IDF (word and character n-grams, vocabulary from the training fold's prompts and
    responses) of each side; features are ``T(A) - T(B)``, the prompt-weighted difference
    ``normalize(T(prompt) * (T(A) - T(B)))``, and log length differences (characters, words);
    with 3 classes also ``|T(A) - T(B)|`` and the absolute length differences (symmetric, for ties).

    Args:
        C: inverse L2 strength.
        word_ngrams: (min, max) word n-gram sizes.
        char_ngrams: (min, max) character n-gram sizes (within word boundaries); None skips them.
        max_features: vocabulary cap of each vectorizer.
        min_df: minimum document frequency of a term.
        max_iter: lbfgs iterations.
    """

    def __init__(
        self,
        C: float = 0.1,
        word_ngrams: Sequence[int] = (1, 2),
        char_ngrams: Sequence[int] | None = (2, 4),
        max_features: int = 100_000,
        min_df: int = 2,
        max_iter: int = 1000,
    ) -> None:
        super().__init__(C, max_iter)
        common: dict[str, Any] = {
            "min_df": min_df,
            "max_features": max_features,
            "sublinear_tf": True,
            "dtype": np.float32,
        }
        self.vectorizers = [
            TfidfVectorizer(analyzer="word", ngram_range=tuple(word_ngrams), **common)
        ]
        if char_ngrams is not None:
            self.vectorizers.append(
                TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), **common)
            )

    def _encode(self, texts: list[str], fit: bool) -> list[sp.csr_matrix]:
        """(3n, V) TF-IDF of prompts, A and B (``texts`` in that order), split in three (n, V)."""
        n = len(texts) // 3
        encode = [v.fit_transform if fit else v.transform for v in self.vectorizers]
        matrix = sp.hstack([f(texts) for f in encode], format="csr")
        return [matrix[i * n : (i + 1) * n] for i in range(3)]

    def features(self, df: pd.DataFrame, fit: bool = False) -> tuple[Features, Features]:
        prompt, a, b = (field_text(df, c) for c in ("prompt", "response_a", "response_b"))
        t_prompt, t_a, t_b = self._encode(prompt + a + b, fit)
        diff = t_a - t_b  # (n, V)
        echo = normalize(t_prompt.multiply(diff).tocsr())  # (n, V)
        chars = np.log1p(char_lengths(df, "response_a")) - np.log1p(char_lengths(df, "response_b"))
        words = np.log1p([len(t.split()) for t in a]) - np.log1p([len(t.split()) for t in b])
        lengths = np.stack([chars, words], axis=1)  # (n, 2)
        x, x_swapped = [diff, echo, lengths], [-diff, -echo, -lengths]
        if self.n_classes == 3:
            symmetric = [abs(diff), np.abs(lengths)]
            x, x_swapped = x + symmetric, x_swapped + symmetric
        return _stack(x), _stack(x_swapped)

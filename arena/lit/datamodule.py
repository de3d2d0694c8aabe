"""``PreferenceDataModule``: files -> validated pairs -> folds -> tokens -> batches.

It lives beside the LightningModules, so that :mod:`arena.data` stays free of Lightning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch

from arena.data.batching import (
    Collator,
    LengthBatchSampler,
    SwapMode,
    dist_info,
    sorted_batches,
)
from arena.data.correction import LabelCorrection, correct_labels
from arena.data.dataset import Layout, PairArrays, PairDataset, View
from arena.data.feature_sets import FeatureNormalizer, Featurizer, make_featurizer
from arena.data.folds import read_folded
from arena.data.format import Budget, Formatter, Template
from arena.data.readers import read_many
from arena.data.schema import DataError, ReadReport, n_classes_of, one_hot, report_totals
from arena.data.teachers import Teacher, load_teachers
from arena.data.tokenize import cached_tokenize


def table_arrays(
    df: pd.DataFrame,
    n_classes: int,
    features: np.ndarray | None = None,
    teachers: np.ndarray | None = None,
) -> PairArrays:
    """Labels and targets of a pair table (soft labels win over hard ones)."""
    labels = df["label"].to_numpy(dtype=np.int64)
    targets = one_hot(labels, n_classes)
    for i, soft in enumerate(df["soft_label"]):
        if soft is not None and not (isinstance(soft, float) and np.isnan(soft)):
            targets[i] = np.asarray(soft, dtype=np.float32)
    return PairArrays(labels=labels, targets=targets, teachers=teachers, features=features)


def check_trainable(df: pd.DataFrame, n_classes: int) -> None:
    """Training rows need a target, and ties need a third class: say which source breaks it."""
    unlabeled = (df["label"].to_numpy() < 0) & df["soft_label"].isna().to_numpy()
    if unlabeled.any():
        sources = sorted(set(df["source"][unlabeled]))
        raise DataError(
            ", ".join(sources),
            None,
            "label",
            f"a label or soft label on every "
            f"training row; {int(unlabeled.sum())} rows have neither",
        )
    if n_classes_of(df) > n_classes:
        sources = sorted(set(df["source"][df["label"].to_numpy() == 2]))
        raise DataError(
            ", ".join(sources),
            None,
            "label",
            f"{n_classes} classes (data.n_classes), found ties: set data.n_classes=3",
        )


class PreferenceDataModule(L.LightningDataModule):
    """Reads, splits, tokenizes and batches preference pairs.

    Args:
        tokenizer: the backbone's tokenizer (its pad token and padding side are used).
        template: the backbone's text template.
        train_files: pair files of any supported format; empty means ``synthetic``.
        synthetic: keyword arguments of :func:`make_synthetic` when no files are given.
        val_files: extra files used only for validation (with ``fold=None``).
        extra_train_files: files whose rows always train and are never validated (pseudo-labelled
            or external pairs); the folds of ``train_files`` stay as they are without them.
        fold: validation fold, or None to train on every row.
        n_folds: number of folds; fold_seed: their seed.
        n_classes: 2 or 3, or None to infer (3 when any tie is present).
        columns: column mapping for generic files; surrogates/empty: reader policies.
        budget: truncation rule; swap/swap_prob: train-time augmentation (see
            :class:`LengthBatchSampler`); val_tta: evaluate
            both orders (swap TTA and swap consistency).
        features: engineered text features to compute and feed: ``none``, ``arena`` or ``seed``
            (:mod:`arena.data.feature_sets`; ``True``/``False`` mean arena/none).
        feature_encoder: sentence encoder (package or weights directory) whose cos(prompt, A)
            and cos(prompt, B) join the features; None for none.
        teachers: distillation teachers (OOF probability files keyed by id).
        label_correction: blend the official training rows' labels with a teacher's OOF
            probabilities (:mod:`arena.data.correction`); validation keeps the official labels.
        batch_size, eval_batch_size, max_tokens, bucket_batches: batching.
        num_workers: DataLoader workers; cache_dir: folds and token cache; seed: swap seed.
        layout: ``joint`` (one sequence per pair) or ``siamese`` (prompt + A and prompt + B as
            two sequences, for ``model.model_factory.architecture=siamese``).
    """

    def __init__(
        self,
        tokenizer: Any,
        template: Template,
        train_files: Sequence[str] = (),
        synthetic: dict[str, Any] | None = None,
        val_files: Sequence[str] = (),
        extra_train_files: Sequence[str] = (),
        fold: int | None = 0,
        n_folds: int = 5,
        fold_seed: int = 42,
        n_classes: int | None = None,
        columns: dict[str, str] | None = None,
        surrogates: Literal["repair", "reject"] = "repair",
        empty: Literal["keep", "placeholder", "drop", "reject"] = "placeholder",
        budget: Budget | None = None,
        swap: SwapMode = "random",
        swap_prob: float = 0.5,
        val_tta: bool = True,
        features: str | bool = "none",
        feature_encoder: str | None = None,
        teachers: Sequence[Teacher] = (),
        label_correction: LabelCorrection | Mapping[str, Any] | None = None,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        max_tokens: int | None = None,
        bucket_batches: int = 64,
        num_workers: int = 0,
        cache_dir: str = ".cache/arena",
        seed: int = 0,
        layout: Layout = "joint",
        packing: bool = False,
    ):
        super().__init__()
        self.tokenizer, self.template = tokenizer, template
        self.train_files, self.val_files = list(train_files), list(val_files)
        self.extra_train_files = list(extra_train_files)
        self.synthetic = dict(synthetic or {})
        self.fold, self.n_folds, self.fold_seed = fold, n_folds, fold_seed
        self.n_classes = n_classes
        self.read_kw = {"columns": columns, "surrogates": surrogates, "empty": empty}
        self.budget = budget or Budget()
        self.swap, self.swap_prob, self.val_tta = swap, swap_prob, val_tta
        self.featurizer: Featurizer | None = make_featurizer(features, feature_encoder)
        self.teachers = list(teachers)
        self.label_correction = LabelCorrection.from_value(label_correction)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_tokens, self.bucket_batches = max_tokens, bucket_batches
        self.num_workers, self.cache_dir, self.seed = num_workers, Path(cache_dir), seed
        self.layout, self.packing = layout, packing
        self.normalizer: FeatureNormalizer | None = None
        self._resume: dict[str, int] | None = None
        self._train_sampler: LengthBatchSampler | None = None
        self.report: dict[str, Any] = {}
        self.collate = Collator(
            tokenizer.pad_token_id,
            tokenizer.padding_side,
            pack=packing,
            row_tokens=self.budget.max_length,
        )

    # -- tables -----------------------------------------------------------------------------

    def read_table(self) -> pd.DataFrame:
        """All training rows (files or synthetic) with folds assigned; rows of
        ``extra_train_files`` come last with fold -1 (never validated)."""
        df, reads = read_folded(
            self.train_files, self.extra_train_files, self.synthetic, n_folds=self.n_folds,
            seed=self.fold_seed, store_dir=self.cache_dir / "folds", **self.read_kw,
        )  # fmt: skip
        self.report.pop("read", None)
        self._record_reads(reads)
        return df

    def _record_reads(self, reads: Iterable[tuple[str, ReadReport]]) -> None:
        """Per-file counts of what the readers repaired, dropped and deduplicated (``read``)
        and their sums (``read_total``); the run's ``summary.json`` carries both."""
        read = [*self.report.get("read", []), *({"role": role, **asdict(r)} for role, r in reads)]
        self.report.update(read=read, read_total=report_totals(read))

    def split(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """(train, val) rows for ``self.fold``."""
        if self.fold is None:
            if not self.val_files:
                return df, None
            val, reports = read_many(self.val_files, **self.read_kw)
            self._record_reads(("val", r) for r in reports)
            return df, val
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"data.fold={self.fold} outside 0..{self.n_folds - 1}")
        in_val = df["fold"].to_numpy() == self.fold
        return df[~in_val].reset_index(drop=True), df[in_val].reset_index(drop=True)

    def _check_not_empty(self) -> None:
        """A run with no training rows, or a fold with no validation rows, is an error naming
        the files (and fold) that produced it, not a run of a random model."""
        files = ", ".join(map(str, self.train_files + self.extra_train_files)) or "data.synthetic"
        if not len(self.train_df):
            where = f" outside fold {self.fold}" if self.fold is not None else ""
            raise DataError(files, None, "*", f"expected training rows{where}; found none")
        if self.fold is not None and (self.val_df is None or not len(self.val_df)):
            msg = f"expected validation rows in fold {self.fold} of {self.n_folds}; found none"
            raise DataError(files, None, "fold", msg)
        if self.fold is None and self.val_files and (self.val_df is None or not len(self.val_df)):
            msg = "expected validation rows; found none"
            raise DataError(", ".join(map(str, self.val_files)), None, "*", msg)

    def formatter(self) -> Formatter:
        tok = self.tokenizer
        return Formatter(
            self.template, self.budget, lambda s: tok(s, add_special_tokens=False)["input_ids"]
        )

    def dataset(
        self, df: pd.DataFrame, view: View, teachers: np.ndarray | None = None
    ) -> PairDataset:
        """A dataset over any pair table, with this module's tokenizer, budget and features."""
        feats, swap = None, None
        if self.featurizer is not None:
            raw = self.featurizer.compute(df, self.cache_dir)
            if self.normalizer is None:
                self.normalizer = FeatureNormalizer.fit(raw, self.featurizer)
            feats, swap = self.normalizer.transform(raw), self.featurizer.swap
        arrays = table_arrays(df, self.n_classes or n_classes_of(df), feats, teachers)
        tokens = cached_tokenize(df, self.tokenizer, self.cache_dir)
        return PairDataset(
            tokens, arrays, self.formatter(), view, swap_features=swap, layout=self.layout
        )

    # -- Lightning hooks ---------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        table = self.read_table()
        self.n_classes = self.n_classes or n_classes_of(table)
        check_trainable(table, self.n_classes)
        self.train_df, self.val_df = self.split(table)
        self._check_not_empty()
        if self.label_correction is not None:  # training rows only: validation stays official
            self.train_df, self.report["label_correction"] = correct_labels(
                self.train_df, self.label_correction, self.n_classes
            )
        teachers = None
        if self.teachers:
            teachers = load_teachers(self.teachers, self.train_df["id"].tolist(), self.n_classes)
        self.train_set = self.dataset(self.train_df, "both", teachers)
        self.val_set = None
        if self.val_df is not None and len(self.val_df):
            self.val_set = self.dataset(self.val_df, "pair" if self.val_tta else "plain")
        n_val = 0 if self.val_df is None else len(self.val_df)
        self.report.update(n_train=len(self.train_df), n_val=n_val)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        sampler = LengthBatchSampler(
            self.train_set.row_lengths() * self._sequences_per_item(self.train_set),
            self.batch_size,
            self.max_tokens,
            self.bucket_batches,
            shuffle=True,
            seed=self.seed,
            swap=self.swap,
            swap_prob=self.swap_prob,
            packed=self.packing,
        )
        if self._resume is not None:
            sampler.resume(**self._resume)
        self._train_sampler = sampler
        return self._loader(self.train_set, sampler)

    def state_dict(self) -> dict[str, int]:
        """Where training stands within its epoch; Lightning saves it in every checkpoint."""
        if self.trainer is None or self._train_sampler is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return {"epoch": self._train_sampler.epoch, "batches_done": int(progress)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """On ``ckpt_path=...``: skip the batches the interrupted run had already trained on, so
        the resumed run sees exactly the batches an uninterrupted one would have."""
        self._resume = dict(state) or None
        if self._resume is not None and self._train_sampler is not None:
            self._train_sampler.resume(**self._resume)

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        if self.val_set is None:
            return []
        return self.eval_loader(self.val_set)

    def eval_loader(self, dataset: PairDataset) -> torch.utils.data.DataLoader:
        """Length-sorted batches, split over DDP ranks; rows are put back in order by the
        ``index`` every batch carries."""
        tokens = self.max_tokens and self.max_tokens * self.eval_batch_size // self.batch_size
        rank, world = dist_info()
        lengths = dataset.row_lengths() * self._sequences_per_item(dataset)
        batches = sorted_batches(
            lengths, tokens or None, self.eval_batch_size, rank, world, self.packing
        )
        return self._loader(dataset, [b.tolist() for b in batches])

    def _sequences_per_item(self, dataset: PairDataset) -> int:
        """What a packed item costs, in sequences of its row's length: both orders of a pair in
        the ``pair`` view, both sides of a siamese pair (1 when not packing: padded batches
        are sized by rows)."""
        if not self.packing:
            return 1
        return (2 if dataset.view == "pair" else 1) * (2 if self.layout == "siamese" else 1)

    def _loader(self, dataset: PairDataset, batch_sampler: Any) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

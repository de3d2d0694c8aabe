"""The OOF writer stores every validation row's probabilities with its label and language, in the
order of the validation rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arena.data.synthetic import make_synthetic


def test_oof_writer_stores_labels_and_languages(tmp_path: Path) -> None:
    """Reports read labels from ``oof.parquet`` itself, in the order of the validation rows."""
    from types import SimpleNamespace

    import torch

    from arena.callbacks import OOFWriter

    val = make_synthetic(6).assign(fold=0)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]] * 2)
    module = SimpleNamespace(
        val_predictions={"index": torch.tensor([5, 4, 3, 2, 1, 0]), "probs": probs}
    )
    trainer = SimpleNamespace(is_global_zero=True, datamodule=SimpleNamespace(val_df=val))
    OOFWriter(str(tmp_path)).on_fit_end(trainer, module)  # type: ignore[arg-type]
    oof = pd.read_parquet(tmp_path / "oof.parquet")
    assert list(oof["id"]) == list(val["id"])
    assert list(oof["label"]) == list(val["label"]) and list(oof["language"]) == list(
        val["language"]
    )
    assert oof["prob_model_a"].iloc[0] == pytest.approx(0.6)  # row 0 was predicted last

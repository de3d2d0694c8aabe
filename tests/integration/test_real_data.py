"""The readers on the real files under ``../shared/data`` (skipped when absent): every file reads
into a valid pair table, alone and together."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arena.data.readers import read_many, read_pairs
from tests.conftest import SHARED_DATA
from tests.helpers import assert_pairs

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


# --- real data (tier 2) --------------------------------------------------------------------
def _real_files() -> list[Path]:
    return sorted([*DATA.glob("wsdm/*.parquet"), *DATA.glob("lmsys/*.csv")])


@needs_data
@pytest.mark.parametrize("path", _real_files(), ids=lambda p: p.name)
def test_real_files_read_into_valid_pairs(path: Path) -> None:
    df, report = read_pairs(path)
    assert_pairs(df)
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    assert report.rows_read == report.rows_kept == len(raw) == len(df)
    assert (df["label"] >= 0).all()
    if path.parent.name == "lmsys":
        ties = int((raw["winner_tie"] == 1).sum())
        assert int((df["label"] == 2).sum()) == ties
        assert path.name != "arena_sample100.csv" or ties == 29


@needs_data
def test_real_files_together() -> None:
    df, reports = read_many(_real_files(), empty="drop")
    assert_pairs(df)
    assert len(df) == sum(r.rows_kept for r in reports)
    assert sum(r.rows_dropped for r in reports) > 0  # pandalm and HH have empty responses

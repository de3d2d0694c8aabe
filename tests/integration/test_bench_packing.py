"""``arena.bench only=packing`` in quick mode: the packed and padded plans cover every sequence
once within the token budget, the equivalence check guards the ratios, and the section reports
the padding share it removes. No absolute times."""

from __future__ import annotations

import math

import numpy as np

from arena.bench import packing
from arena.bench.common import Settings
from arena.bench.report import judge


def test_packing_section_reports_ratios_behind_an_equivalence_check() -> None:
    out = packing.run(Settings(quick=True, repeats=3))
    ratios = out["ratios"]
    for key in ("packing.train_packed_vs_padded", "packing.score_packed_vs_padded"):
        assert math.isfinite(ratios[key]) and ratios[key] > 0
    assert 0 < ratios["packing.padding_share_removed"] < 1
    assert out["equivalence"]["ok"] and out["equivalence"]["max_diff"] <= 1e-4
    raw = out["raw"]
    assert raw["computed_tokens"]["train_packed"] < raw["computed_tokens"]["train_padded"]
    verdict = judge(ratios, {"packing": out})
    assert set(verdict) == {"packing.train_packed_vs_padded", "packing.score_packed_vs_padded"}


def test_plans_cover_every_sequence_once_within_the_budget() -> None:
    seqs = packing.sequences(40, 128, seed=1)
    lengths = np.array([len(s) for s in seqs])
    for name, batches in packing.plans(lengths, 128, seed=1).items():
        assert sorted(int(i) for b in batches for i in b) == list(range(40)), name
        cost = [
            lengths[b].sum() if "packed" in name else len(b) * lengths[b].max() for b in batches
        ]
        assert max(cost) <= packing.BUDGET * 128, name

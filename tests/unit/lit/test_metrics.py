"""The collapse check tells a model that learned nothing from one that is merely overconfident."""

from __future__ import annotations

import numpy as np

from arena.lit.metrics import check_warning, collapse_check


def test_collapse_check_tells_learned_nothing_from_overconfident() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    signal = np.where(labels == 0, 0.4, -0.4) + rng.normal(0, 1, len(labels))
    cases = {  # P(A) per row
        "constant": np.full(len(labels), 0.5),
        "noise": 0.5 + rng.normal(0, 0.05, len(labels)),  # varies, ranks nothing
        "learned": 1 / (1 + np.exp(-signal)),
        "overconfident": 1 / (1 + np.exp(-5 * signal)),  # ranks as well, log loss ~1.2
    }
    checks = {}
    for name, prob_a in cases.items():
        probs = np.stack([prob_a, 1 - prob_a], axis=1)
        log_loss = float(-np.log(probs[np.arange(len(labels)), labels]).mean())
        checks[name] = collapse_check(probs, labels, log_loss)
        checks[name]["warning"] = check_warning(checks[name], log_loss)
    flags = {name: (c["collapsed"], c["beats_prior"]) for name, c in checks.items()}
    assert flags == {
        "constant": (True, False),
        "noise": (True, False),
        "learned": (False, True),
        "overconfident": (False, False),
    }
    assert "nothing was learned" in checks["noise"]["warning"]
    assert "overconfident" in checks["overconfident"]["warning"]
    assert checks["learned"]["warning"] is None

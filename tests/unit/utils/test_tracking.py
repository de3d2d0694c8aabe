"""W&B hears how a run ended: its real exit status, not a success after every run."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb
from lightning.pytorch.loggers import WandbLogger

from arena.utils.tracking import close


@pytest.mark.parametrize(("exit_code", "status"), [(0, "success"), (1, "failed"), (143, "failed")])
def test_close_gives_wandb_the_runs_exit_status(
    exit_code: int, status: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[int] = []
    finalized: list[str] = []
    monkeypatch.setattr(wandb, "finish", lambda exit_code=None, **kw: finished.append(exit_code))
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    monkeypatch.setattr(logger, "finalize", finalized.append)
    close([logger], exit_code)
    assert finished == [exit_code] and finalized == [status]

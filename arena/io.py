"""Atomic writes: every artifact goes to a temporary name in its folder, then is renamed into place,
so a crash never leaves a half-written file that looks complete."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically; NaN and infinities become null (JSON has neither)."""
    text = json.dumps(_finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    """Write a parquet file atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def finished_run(run_dir: str | Path) -> bool:
    """A training run dir whose ``summary.json`` says it finished (not interrupted)."""
    path = Path(run_dir) / "summary.json"
    return path.is_file() and json.loads(path.read_text()).get("status") != "interrupted"

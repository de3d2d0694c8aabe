"""Atomic writes: every artifact (file or folder) goes to a temporary name in its folder, then is
renamed into place, so a crash never leaves a half-written one that looks complete. Run dirs:
whether one holds a finished run, and holding one for a run (:func:`claim_run_dir`)."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
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


@contextmanager
def atomic_dir(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path``; when the block succeeds, rename it onto
    ``path``. An existing ``path`` is replaced (moved aside first, removed after), or with
    ``replace=False`` kept: a cache entry another process published first holds the same files.
    A failed block leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists() and replace:
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)
            except OSError:
                if replace or not path.is_dir():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


#: where the training commands have Hydra write a run's config (conf/train.yaml, baselines.yaml):
#: it replaces ``.hydra/`` only once the run dir is claimed
PENDING_CONFIG = ".hydra_pending"


def _first_process() -> bool:
    """Not a further rank of a multi-process job (torchrun, Lightning's DDP launcher, SLURM)."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(name, "0") == "0" for name in ranks)


@contextmanager
def claim_run_dir(run_dir: str | Path, resume: bool) -> Iterator[None]:
    """Hold ``run_dir`` for one run: one process at a time (a lock on ``.lock``), and a finished
    run only when resuming it. Then Hydra's config of this run (in :data:`PENDING_CONFIG`)
    replaces ``.hydra/``; a refused run leaves every file of the finished one as it was. Further
    ranks of a multi-process run (which Lightning starts without a Hydra config) hold nothing.

    Raises:
        RuntimeError: another process holds the run dir.
        FileExistsError: the run dir holds a finished run and this is no resume.
    """
    run_dir = Path(run_dir)
    if not _first_process():
        yield
        return
    pending = run_dir / PENDING_CONFIG
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RuntimeError(
                f"{run_dir} is in use by {holder}: wait for it to end, or choose another "
                "hydra.run.dir"
            ) from None
        try:
            if finished_run(run_dir) and not resume:
                shutil.rmtree(pending, ignore_errors=True)
                raise FileExistsError(
                    f"{run_dir} holds a finished run (summary.json); choose another "
                    "hydra.run.dir or resume it with ckpt_path=last"
                )
            if pending.is_dir():
                shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
                os.replace(pending, run_dir / ".hydra")
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

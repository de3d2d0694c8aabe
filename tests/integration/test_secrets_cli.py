"""Secrets never reach what a run writes or prints: the W&B key and HF token from the environment,
and tokens or keys given as overrides, are absent from every file of a tiny run, from a failure's
header and from multirun launch lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from arena.utils.secrets import (
    REDACTED,
)
from tests.conftest import ROOT
from tests.helpers import HF_ENV, HF_OVERRIDE, PLAIN_OVERRIDE, SECRETS, WANDB_KEY


def _leaks(run: Path) -> list[str]:
    """``file: secret`` for every secret found in any file under ``run`` (links followed)."""
    found = []
    for path in sorted(run.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for secret in SECRETS:
            for encoded in (secret.encode(), secret.encode("utf-16-le")):
                if encoded in data:
                    found.append(f"{path.relative_to(run)}: {secret}")
    return found


def test_tiny_run_writes_no_secret_anywhere(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": WANDB_KEY,
        "HF_TOKEN": HF_ENV,
        "OMP_NUM_THREADS": "1",
    }
    args = [
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "logger=[csv,wandb]",
        "data.synthetic.n=120",
        "data.budget.max_length=96",
        "data.batch_size=16",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        f"+hf_token={HF_OVERRIDE}",
        f"+wandb_api_key={PLAIN_OVERRIDE}",
        "+hub.endpoint_auth=${oc.env:HF_TOKEN}",  # resolved in what the run logs
    ]
    cmd = [sys.executable, "-m", "arena.train", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    written = {p.relative_to(run).parts[0] for p in run.rglob("*") if p.is_file()}
    assert {".hydra", "summary.json", "checkpoints", "csv", "wandb"} <= written, written
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert _leaks(run) == []
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert config.hf_token == REDACTED and config.wandb_api_key == REDACTED
    hparams = (run / "csv" / "hparams.yaml").read_text()
    assert f"endpoint_auth: '{REDACTED}'" in hparams


def _console(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -m arena.train`` with tiny settings, a token and a key as overrides."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    tiny = [
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.synthetic.n=64",
        "data.budget.max_length=96",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        f"+hf_token={HF_OVERRIDE}",
        f"+wandb_api_key={PLAIN_OVERRIDE}",
    ]
    cmd = [sys.executable, "-m", "arena.train", *args, *tiny]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_failure_header_prints_no_secret(tmp_path: Path) -> None:
    proc = _console([f"hydra.run.dir={tmp_path / 'run'}", "data.fold=99"], tmp_path)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "outside 0..4" in console, console[-3000:]
    assert HF_OVERRIDE not in console and PLAIN_OVERRIDE not in console, console[-3000:]
    header = next(line for line in console.splitlines() if "Error executing job" in line)
    assert "'data.fold=99'" in header and "'+hf_token=***', '+wandb_api_key=***']" in header


def test_multirun_launch_lines_print_no_secret(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _console(["-m", "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert HF_OVERRIDE not in console and PLAIN_OVERRIDE not in console, console[-3000:]
    assert "Launching 2 jobs locally" in console
    for n in (1, 2):
        assert f"seed={n} " in console and "+hf_token=*** +wandb_api_key=***" in console
    assert _leaks(sweep) == []

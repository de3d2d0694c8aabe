"""Secrets never reach what a run writes: the W&B key and HF token from the environment, and
tokens or keys given as config overrides, are absent from every file of a tiny run (Hydra's
``.hydra/``, ``summary.json``, checkpoints, CSV logs, W&B offline files)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from arena.secrets import REDACTED, ScrubSecrets, find_secrets, is_secret_key, scrub, scrub_files
from tests.conftest import ROOT

WANDB_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0deadbeef"  # 40 hex, like a W&B key
HF_ENV = "hf_EnvTokenAbCdEfGhIjKlMnOpQrStUvWxYz01"
HF_OVERRIDE = "hf_OverrideTokenZyXwVuTsRqPoNmLkJiHg23"
PLAIN_OVERRIDE = "plain-secret-without-any-shape-4711"
SECRETS = (WANDB_KEY, HF_ENV, HF_OVERRIDE, PLAIN_OVERRIDE)


def test_secret_keys_and_lookalikes() -> None:
    for key in ("token", "hf_token", "HF_TOKEN", "api_key", "wandb_api_key", "password"):
        assert is_secret_key(key), key
    for key in ("pad_token", "max_tokens", "pad_token_id", "tokenizer", "flops_per_token", "key"):
        assert not is_secret_key(key), key


def test_scrub_hides_env_values_keys_overrides_and_token_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_ENV)
    data = {
        "backbone": {
            "path": f"/models/{HF_ENV}/x",
            "pad_token": "<|endoftext|>",
            "token": 123456789,
        },
        "hub": {"api_key": PLAIN_OVERRIDE, "use_auth_token": True, "password": ""},
        "notes": [f"fetched with {HF_OVERRIDE}", "data.fold=0"],
        "overrides": [f"+logger.wandb.api_key={WANDB_KEY}", "seed=1"],
        "echo": f"k={WANDB_KEY}",
    }
    clean = scrub(data)
    text = json.dumps(clean)
    assert not any(s in text for s in SECRETS), text
    assert clean["backbone"] == {
        "path": f"/models/{REDACTED}/x",
        "pad_token": "<|endoftext|>",
        "token": REDACTED,
    }
    assert clean["hub"] == {"api_key": REDACTED, "use_auth_token": True, "password": ""}
    assert clean["overrides"] == [f"+logger.wandb.api_key={REDACTED}", "seed=1"]
    assert clean["echo"] == f"k={REDACTED}" and data["echo"] == f"k={WANDB_KEY}"  # a copy
    assert find_secrets({"token": "short"}) == {HF_ENV}  # too short to replace everywhere


def test_scrub_files_hides_an_override_everywhere_it_was_copied(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    hydra = tmp_path / "hydra.yaml"
    OmegaConf.save(OmegaConf.create([f"+wandb_api_key={PLAIN_OVERRIDE}", "seed=3"]), overrides)
    dirname = f"+wandb_api_key={PLAIN_OVERRIDE},seed=3"
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"override_dirname": dirname}}}), hydra)
    assert scrub_files([overrides, hydra, tmp_path / "absent.yaml"]) == [overrides, hydra]
    assert PLAIN_OVERRIDE not in overrides.read_text() + hydra.read_text()
    assert OmegaConf.load(overrides)[1] == "seed=3"
    assert scrub_files([overrides, hydra]) == []  # nothing left to change


def test_hydra_callback_scrubs_the_job_and_the_sweep_files(tmp_path: Path) -> None:
    job, sweep = tmp_path / "sweep" / "0", tmp_path / "sweep"
    (job / ".hydra").mkdir(parents=True)
    override = f"+hf_token={HF_OVERRIDE}"
    OmegaConf.save(OmegaConf.create([override]), job / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"hydra": {"overrides": {"task": [override]}}}), sweep / "multirun.yaml"
    )
    hydra = {
        "output_subdir": ".hydra",
        "runtime": {"output_dir": str(job)},
        "sweep": {"dir": str(sweep)},
    }
    config = OmegaConf.create({"hydra": {**hydra, "mode": RunMode.MULTIRUN}})
    ScrubSecrets().on_job_start(config=config, task_function=lambda cfg: None)
    for path in (job / ".hydra" / "overrides.yaml", sweep / "multirun.yaml"):
        assert HF_OVERRIDE not in path.read_text() and "+hf_token=***" in path.read_text()


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


@pytest.mark.integration
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


def test_log_filter_hides_overrides_in_launcher_lines(caplog: pytest.LogCaptureFixture) -> None:
    from arena.secrets import LAUNCHER_LOGGERS, filter_launcher_logs

    logger = logging.getLogger(LAUNCHER_LOGGERS[0])
    try:
        filter_launcher_logs({PLAIN_OVERRIDE})
        filter_launcher_logs({PLAIN_OVERRIDE})  # once more: still one filter
        assert len(logger.filters) == 1
        with caplog.at_level(logging.INFO, logger=LAUNCHER_LOGGERS[0]):
            logger.info("\t#%d : seed=1 +hf_token=%s note=%s", 0, HF_OVERRIDE, PLAIN_OVERRIDE)
        assert caplog.messages == ["\t#0 : seed=1 +hf_token=*** note=***"]
    finally:
        for name in LAUNCHER_LOGGERS:
            logging.getLogger(name).filters.clear()


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


@pytest.mark.integration
def test_failure_header_prints_no_secret(tmp_path: Path) -> None:
    proc = _console([f"hydra.run.dir={tmp_path / 'run'}", "data.fold=99"], tmp_path)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "outside 0..4" in console, console[-3000:]
    assert HF_OVERRIDE not in console and PLAIN_OVERRIDE not in console, console[-3000:]
    header = next(line for line in console.splitlines() if "Error executing job" in line)
    assert "'data.fold=99'" in header and "'+hf_token=***', '+wandb_api_key=***']" in header


@pytest.mark.integration
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

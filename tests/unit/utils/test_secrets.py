"""Secret scrubbing: which keys are secrets, scrubbing values, keys, overrides and token shapes,
files where an override was copied, and the Hydra callback and log filter."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from arena.utils.secrets import (
    REDACTED,
    ScrubSecrets,
    find_secrets,
    is_secret_key,
    scrub,
    scrub_files,
)
from tests.helpers import HF_ENV, HF_OVERRIDE, PLAIN_OVERRIDE, SECRETS, WANDB_KEY


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


def test_log_filter_hides_overrides_in_launcher_lines(caplog: pytest.LogCaptureFixture) -> None:
    from arena.utils.secrets import LAUNCHER_LOGGERS, filter_launcher_logs

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

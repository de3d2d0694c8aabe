"""Shared fixtures: Hydra composition of the real conf/, the repo paths, tiny checkpoints, models.

The tier is the folder: everything under ``tests/integration`` is marked ``integration``
(commands, subprocesses, real data), ``tests/unit/<package>`` tests one library package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from arena.data.synthetic import make_synthetic
from arena.inference import Predictor
from arena.models.merge import merge_checkpoints, save_merged
from arena.utils.config import register_resolvers
from tests.helpers import (
    CHAT_TEMPLATE,
    CHECKPOINTS,
    build_checkpoint,
    build_decoder,
    lora_fold,
    write_wsdm,
)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

os.environ.setdefault("WANDB_MODE", "offline")
register_resolvers()


def compose_cfg(overrides: list[str], tmp_path: Path) -> DictConfig:
    """Compose conf/train.yaml as ``python -m arena.train`` would, with run paths in tmp_path."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path / "cache")
        cfg.paths.shared_data = str(SHARED_DATA)
        cfg.experiment_name = next(
            (o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "quickstart"
        )
    return cfg


@pytest.fixture
def compose_in(tmp_path: Path):
    return lambda overrides: compose_cfg(overrides, tmp_path)


# -- inference fixtures (tests/test_predict*.py) -------------------------------------------


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models are fastest single-threaded, and the shared CPU is often oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    """Tiny checkpoints of every kind in CHECKPOINTS (scored single-threaded)."""
    root = tmp_path_factory.mktemp("ckpts")
    return {name: build_checkpoint(name, root, root / "cache") for name in CHECKPOINTS}


@pytest.fixture(scope="module")
def predictors(ckpts: dict[str, Path]) -> dict[str, Predictor]:
    cache = ckpts["fusion2"].parent / "cache"
    return {
        name: Predictor.from_checkpoint(path, cache_dir=cache, max_tokens=1200, batch_size=16)
        for name, path in ckpts.items()
    }


@pytest.fixture(scope="module")
def folds(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folds")
    cache = root / "cache"
    return {
        "f0": lora_fold(root, cache, 0),
        "f1": lora_fold(root, cache, 1),
        "r8": lora_fold(root, cache, 2, r=8),
        "cache": cache,
    }


@pytest.fixture(scope="module")
def merged(folds: dict[str, Path]) -> Path:
    model, tokenizer, config = merge_checkpoints(
        [folds["f0"], folds["f1"]], method="delta", cache_dir=folds["cache"]
    )
    return save_merged(model, tokenizer, config, folds["f0"].parent / "merged")


@pytest.fixture(scope="module")
def decoders(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {
        "chat": build_decoder("qwen2", root, CHAT_TEMPLATE),
        "base": build_decoder("llama", root, None),
    }


@pytest.fixture(scope="module")
def wsdm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df = make_synthetic(29, seed=21, n_turns_max=2)
    return write_wsdm(df, tmp_path_factory.mktemp("stream") / "test.parquet", join_turns=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration ``integration`` (the tier is the folder)."""
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in item.path.parents:
            item.add_marker(pytest.mark.integration)

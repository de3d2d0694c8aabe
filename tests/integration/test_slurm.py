"""The submitit SLURM launcher is the one home of a job's size: ``hydra.launcher.nodes`` and
``gpus_per_node`` become ``trainer.num_nodes`` and ``trainer.devices`` (``${launcher:...}`` in
conf/trainer), which Lightning's SLURMEnvironment then agrees with. Composes only: no process
is started and no process group is initialised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, open_dict, read_write

from arena.train import _devices
from tests.conftest import CONF, ROOT, SHARED_DATA

TWO_NODES = [
    "experiment=teacher_tiny_llama",
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.nodes=2",
    "hydra.launcher.gpus_per_node=2",
    "trainer=ddp",
    "trainer.accelerator=cpu",
]
# what SLURM sets for the task of global rank 3 of `sbatch --nodes=2 --ntasks-per-node=2`
RANK_3_OF_4 = {
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_ID": "123",
    "SLURM_JOB_NAME": "teacher",  # not bash/interactive, which Lightning takes for interactive
    "SLURM_NODELIST": "node[1-2]",
}


@pytest.fixture
def hydra_job(tmp_path: Path) -> Iterator:
    """Compose as a Hydra job sees it: the HydraConfig singleton set (restored afterwards), the
    ``hydra`` node gone from the job's config (``keep_hydra=True``: kept, as the launcher sees
    it), and the run paths in tmp_path."""
    instance = HydraConfig.instance()
    saved = instance.cfg

    def job(overrides: list[str], keep_hydra: bool = False) -> DictConfig:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        instance.set_config(cfg)
        with read_write(cfg), open_dict(cfg):
            if not keep_hydra:
                del cfg["hydra"]
            cfg.paths.root_dir = str(ROOT)
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.cache_dir = str(tmp_path / "cache")
            cfg.paths.shared_data = str(SHARED_DATA)
            cfg.experiment_name = "teacher_tiny_llama"
        return cfg

    yield job
    instance.cfg = saved


def test_launcher_sizes_the_trainer(hydra_job) -> None:
    # what the plugin hands to submitit: sbatch --nodes, --ntasks-per-node (one task per GPU)
    params = instantiate(hydra_job(TWO_NODES, keep_hydra=True).hydra.launcher).params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 2, 2)
    cfg = hydra_job(TWO_NODES)
    assert cfg.trainer.num_nodes == 2
    assert cfg.trainer.devices == 2
    assert _devices(cfg) == 4  # plan=true sizes the job the same way


def test_lightning_sees_the_slurm_job(hydra_job, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = hydra_job(TWO_NODES)
    for name, value in RANK_3_OF_4.items():
        monkeypatch.setenv(name, value)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment)
    assert trainer.num_nodes == 2
    assert trainer.num_devices == 2
    assert trainer.world_size == 4
    assert trainer.global_rank == 3
    assert trainer.node_rank == 1
    assert trainer.local_rank == 1
    # what the launcher checks when fit starts: raises if devices / num_nodes disagree with SLURM
    env.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)


@pytest.mark.parametrize(
    ("trainer", "devices"), [("cpu", 1), ("gpu", 1), ("ddp", "auto"), ("fsdp", "auto")]
)
def test_defaults_without_submitit(trainer: str, devices: int | str, hydra_job, compose_in) -> None:
    """Outside a Hydra job (compose) and under a launcher without nodes (basic, joblib)."""
    assert compose_in([f"trainer={trainer}"]).trainer.num_nodes == 1
    assert compose_in([f"trainer={trainer}"]).trainer.devices == devices
    for launcher in ("local", "joblib"):
        cfg = hydra_job([f"trainer={trainer}", f"hydra/launcher={launcher}"])
        assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (1, devices)

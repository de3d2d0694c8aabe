"""The Hydra application: every experiment composes, instantiates and plans offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from arena.plan import plan_run
from tests.conftest import EXPERIMENTS

TWIN = {"gemma2": "tiny_gemma2", "qwen2": "tiny_qwen2", "llama": "tiny_llama", "bert": "minilm"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_plans_offline(experiment: str, compose_in, tmp_path: Path) -> None:
    cfg = compose_in([f"experiment={experiment}", "plan=true"])
    plan = plan_run(cfg)
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["params_total"] == plan["params_total"] > 0
    assert 0 < plan["params_trainable"] <= plan["params_total"]
    assert plan["memory_per_device_gb"]["total"] > 0
    assert plan["flops_per_sample"] > plan["flops_per_sample_forward"] > 0
    assert plan["est_samples_per_second"] > 0


def test_plan_numbers_for_gemma2_9b(compose_in) -> None:
    plan = plan_run(compose_in(["experiment=classifier_gemma9b_qlora", "plan=true"]))
    assert 9.1e9 < plan["params_total"] < 9.4e9  # gemma-2-9b: 9.24B with embeddings
    assert plan["params_trainable"] < 0.01 * plan["params_total"]  # LoRA + head only
    # 4-bit weights of 9B params: ~5 GB, far below the bf16 18 GB
    assert 3 < plan["memory_per_device_gb"]["weights"] < 8


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_instantiates_with_a_twin(experiment: str, compose_in) -> None:
    cfg = compose_in([f"experiment={experiment}"])
    family = cfg.backbone.spec.arch.model_type
    overrides = [
        f"experiment={experiment}",
        f"backbone={TWIN[family]}",
        "trainer=cpu",
        "logger=csv",
        "data.train_files=[]",
        "data.teachers=[]",
        "model.model_factory.quantization=none",
        "data.batch_size=2",
    ]
    if "distill" in experiment:
        overrides.append("model.loss.n_teachers=0")
    cfg = compose_in(overrides)
    module = instantiate(cfg.model)
    module.configure_model()
    assert module.model is not None
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    spec = instantiate(cfg.backbone.spec)
    assert spec.name == cfg.backbone.spec.name


@pytest.mark.parametrize("launcher", ["local", "joblib", "submitit_slurm"])
def test_launchers_compose(launcher: str) -> None:
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.split(".")[-1] in (
        "BasicLauncher",
        "JoblibLauncher",
        "SlurmLauncher",
    )


def test_distill_loss_takes_the_teachers_weights(compose_in) -> None:
    cfg = compose_in(["experiment=distill_gemma9b", "data.teachers.0.weight=2.0"])
    loss = instantiate(cfg.model.loss)
    assert loss.n_teachers == 2
    assert list(cfg.model.loss.teacher_weights) == [2.0, 1.0]
    assert list(compose_in(["experiment=distill_qwen14b"]).model.loss.teacher_weights) == [1.0] * 3

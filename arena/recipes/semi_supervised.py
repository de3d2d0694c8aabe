"""Semi-supervised rounds (the WSDM "LLM-generated data" recipe), one resumable command:

1. (``recipe.label_correction``) a K-fold label-correction model (an encoder such as
   DeBERTa-v3-large) whose OOF probabilities are blended into the official labels of every round
   (``data.label_correction``);
2. (``recipe.generate``) unlabeled pairs: prompts synthesized from the official prompts by a
   prompt generator (optional), answered by two generator models (``arena.generate``); else
   ``data.unlabeled_file``;
3. round 0: ``recipe.experiment`` trained on the official pairs, validated on official fold
   ``recipe.fold``;
4. round k >= 1: the unlabeled pairs soft-labelled (``arena.pseudo_label``, swap TTA) by round
   k-1's model (``labeller: last``) or the ensemble of every earlier round (``all``), refused when
   the labels carry no information (near-uniform or one class); then the experiment trained from
   round k-1's weights on the official + soft-labelled pairs, validated on the same official rows.

Layout under the output dir: ``logs/train/<experiment>/rounds/round<k>/`` (runs),
``pseudo/round<k>.parquet`` (+ ``.summary.json``), ``generated/unlabeled.parquet``,
``logs/train/<label correction experiment>/multirun_pipeline/fold<k>/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from arena.recipes.stages import (
    StageCommands,
    Workspace,
    hydra_list,
    hydra_value,
    pooled,
    run_metrics,
    sweep_dir,
    train_folds,
    train_once,
)


def run_rounds(
    recipe: DictConfig, space: Workspace, run: StageCommands, twin: Callable[[str], list[str]]
) -> dict[str, Any]:
    """Run (or resume) the label correction, the generation and every round.

    Args:
        recipe: ``conf/recipe/semi_supervised*.yaml``.
        space: the data files and paths.
        run: the stage runner.
        twin: experiment -> the overrides that run it on this CPU (empty without ``twins``).

    Returns:
        The summary's stage parts: ``label_correction`` (pooled OOF metrics),
        ``unlabeled_file``, ``generate`` (its summary, when generated) and ``rounds`` (per round:
        validation metrics on the official fold and its soft labels).
    """
    summary: dict[str, Any] = {}
    correction: list[str] = []
    if recipe.label_correction:
        lc = recipe.label_correction
        runs = train_folds(run, lc.experiment, recipe.n_folds, space,
                           [*twin(lc.experiment), *recipe.train_args])  # fmt: skip
        summary["label_correction"] = pooled(runs) | {"weight": lc.weight}
        store = sweep_dir(space.log_dir, lc.experiment)
        correction = [f"data.label_correction={{teacher: {{name: {lc.experiment}, "
                      f"runs: {hydra_value(store)}}}, weight: {lc.weight}}}"]  # fmt: skip
    unlabeled = unlabeled_pairs(recipe, space, run)
    summary["unlabeled_file"] = str(unlabeled)
    if recipe.generate:  # what generation wrote and dropped (empty, repeated)
        summary["generate"] = json.loads(unlabeled.with_suffix(".summary.json").read_text())
    experiment = recipe.experiment
    common = [*space.data_args(), f"data.n_folds={recipe.n_folds}", f"data.fold={recipe.fold}",
              "data.val_files=[]", *correction, *twin(experiment), *recipe.train_args]  # fmt: skip
    rounds_dir = space.log_dir / "train" / experiment / "rounds"
    done: list[Path] = []
    rounds: list[dict[str, Any]] = []
    for k in range(int(recipe.rounds) + 1):
        args = [*common, f"round={k}"]
        pseudo = None
        if k:
            pseudo = soft_labels(recipe, space, run, k, unlabeled, done)
            extra = [*space.extra_train_files, pseudo]
            args += [f"init_from={hydra_value(done[-1])}",
                     f"data.extra_train_files={hydra_list(extra)}"]  # fmt: skip
        done.append(train_once(run, f"round{k}", rounds_dir / f"round{k}", experiment, args))
        rounds.append({"round": k, **run_metrics(done[-1]), "soft_labels": _labels_report(pseudo)})
    return summary | {"rounds": rounds}


def unlabeled_pairs(recipe: DictConfig, space: Workspace, run: StageCommands) -> Path:
    """The pairs to soft-label: generated (``recipe.generate``), else ``space.unlabeled_file``."""
    if not recipe.generate:
        if space.unlabeled_file is None:
            raise ValueError("the recipe generates no pairs: set data.unlabeled_file")
        return space.unlabeled_file
    gen = recipe.generate
    out = space.out / "generated" / "unlabeled.parquet"
    if not out.exists():
        options = cast(dict[str, Any], OmegaConf.to_container(gen, resolve=True))
        args = [f"{key}={_override(value)}" for key, value in options.items()]
        logs = space.log_dir / "generate"
        run("generate", ["arena.generate", f"prompts_file={hydra_value(space.train_file)}",
                         f"output_file={hydra_value(out)}", f"output_dir={hydra_value(logs)}",
                         *args])  # fmt: skip
    return out


def soft_labels(
    recipe: DictConfig, space: Workspace, run: StageCommands, k: int, unlabeled: Path,
    done: list[Path],
) -> Path:  # fmt: skip
    """Round ``k``'s soft labels of ``unlabeled`` by the last round's model or every earlier
    round's ensemble; ``arena.pseudo_label`` refuses uninformative labels (the recipe stops)."""
    out = space.out / "pseudo" / f"round{k}.parquet"
    if not out.exists():
        opts = recipe.pseudo_label
        labellers = done if opts.labeller == "all" else done[-1:]
        run(f"pseudo_label_round{k}", [
            "arena.pseudo_label", f"ckpt={hydra_list(labellers)}", f"round={k}",
            f"data.unlabeled_file={hydra_value(unlabeled)}", f"output_file={hydra_value(out)}",
            f"output_dir={hydra_value(space.log_dir / 'pseudo_label' / f'round{k}')}",
            f"tta={opts.tta}", f"min_confidence={_override(opts.min_confidence)}",
            f"binary={_override(bool(opts.binary))}",
            f"allow_uninformative={_override(bool(opts.allow_uninformative))}",
            f"paths.cache_dir={hydra_value(space.paths['cache_dir'])}",
        ])  # fmt: skip
    return out


def _override(value: Any) -> str:
    """A plain config value as a Hydra override value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return hydra_list(value)
    return hydra_value(value)


def _labels_report(pseudo: Path | None) -> dict[str, Any] | None:
    """What a round's soft labels were: rows, confidence, class balance, informative."""
    if pseudo is None:
        return None
    s = json.loads(pseudo.with_suffix(".summary.json").read_text())
    keys = ("rows_written", "mean_confidence", "argmax_share", "informative", "ckpt")
    return {k: s.get(k) for k in keys}

"""Recipe fidelity: every shipped experiment runs as ``python -m arena.train experiment=<name>``
with only the changes a CPU forces (:data:`arena.utils.config.CPU_SUBSTITUTIONS`), small data
fixtures and a few optimizer steps (:data:`FIXTURES`), and nothing else; its checkpoint reloads
through ``arena.predict``'s code to the probabilities its own validation wrote. The GPU recipes of
``conf/recipe`` run whole on their twins (``arena.pipeline twins=true``)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.torch import load_file

from arena.data.synthetic import make_synthetic
from arena.data.writers import write_pairs
from arena.predict import predict_run
from arena.utils.config import CPU_SUBSTITUTIONS, cpu_overrides
from tests.conftest import CONF, EXPERIMENTS, ROOT

#: Besides CPU_SUBSTITUTIONS, all these tests change: the data and how long a run trains.
FIXTURES: dict[str, str] = {
    "data.train_files": "a 64-pair synthetic file in the layout of the experiment's classes",
    "data.val_files": "a second 64-pair file (experiments that validate on files of their own, "
    "or that run without folds and validate on the files users give)",
    "data.synthetic.n": "64 synthetic pairs instead of thousands",
    "data.teachers.*.runs": "a fixture sweep dir per teacher with OOF probabilities of every id",
    "trainer.max_steps": "2 optimizer steps",
}
N_ROWS = 64
ENV = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def shipped(experiment: str, overrides: tuple[str, ...] = ()) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", *overrides])


def flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf key -> value of an unresolved config (interpolations compare as written)."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out or {prefix: node}


def changed_keys(a: DictConfig, b: DictConfig) -> set[str]:
    fa = flat(OmegaConf.to_container(a, resolve=False))
    fb = flat(OmegaConf.to_container(b, resolve=False))
    return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def allowed(key: str) -> bool:
    return any(
        key == pattern or key.startswith(pattern + ".") or fnmatch.fnmatch(key, pattern)
        for pattern in [*CPU_SUBSTITUTIONS, *FIXTURES]
    )


def pair_file(directory: Path, n_classes: int, seed: int) -> Path:
    """Synthetic labelled pairs: LMSYS csv for 3 classes, WSDM parquet for 2."""
    table = make_synthetic(N_ROWS, seed=seed, n_classes=n_classes, noise=0.1)
    name = f"pairs{n_classes}_{seed}"
    if n_classes == 3:
        return write_pairs(table, directory / f"{name}.csv", "lmsys")
    return write_pairs(table, directory / f"{name}.parquet", "wsdm")


def teacher_sweep(directory: Path, name: str, ids: list[str], n_classes: int) -> Path:
    """A sweep dir as a teacher's fold runs leave it: ``<sweep>/<run>/oof.parquet``."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    probs = rng.dirichlet(np.ones(n_classes), size=len(ids))
    oof = pd.DataFrame({"id": ids, "fold": 0})
    for k, label in enumerate(["model_a", "model_b", "tie"][:n_classes]):
        oof[f"prob_{label}"] = probs[:, k]
    sweep = directory / name / "multirun_fixture"
    (sweep / "0_fold0").mkdir(parents=True, exist_ok=True)
    oof.to_parquet(sweep / "0_fold0" / "oof.parquet")
    return sweep


def ids_of(path: Path) -> list[str]:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str)["id"].tolist()
    return pd.read_parquet(path)["id"].astype(str).tolist()


def fixture_overrides(cfg: DictConfig, data_dir: Path) -> tuple[list[str], Path]:
    """The FIXTURES overrides for a shipped config, and the file its validation rows come from."""
    n_classes = int(cfg.data.n_classes)
    if cfg.data.train_files or cfg.data.synthetic is None:
        train = pair_file(data_dir, n_classes, seed=1)
        overrides = [f"data.train_files=[{train}]"]
    else:  # the rows the datamodule generates, written out for predict
        s = cfg.data.synthetic
        table = make_synthetic(N_ROWS, seed=s.seed, n_classes=s.n_classes, noise=s.noise)
        train = write_pairs(table, data_dir / "synthetic.csv", "lmsys")  # keeps turns
        overrides = [f"data.synthetic.n={N_ROWS}"]
    val = train
    if cfg.data.val_files or cfg.data.fold is None:  # no folds: validated on a file
        val = pair_file(data_dir, n_classes, seed=2)
        overrides.append(f"data.val_files=[{val}]")
    for k, teacher in enumerate(cfg.data.teachers):
        sweep = teacher_sweep(data_dir / "teachers", teacher.name, ids_of(train), n_classes)
        overrides.append(f"data.teachers.{k}.runs={sweep}")
    return [*overrides, "trainer.max_steps=2"], val


def run(module: str, args: list[str], timeout: int = 600) -> None:
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def rows_of(source: Path, ids: pd.Series, out: Path) -> Path:
    """The rows of ``source`` with ``ids``, in its own layout."""
    if source.suffix == ".csv":
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
        table[table["id"].isin(set(ids))].to_csv(out.with_suffix(".csv"), index=False)
        return out.with_suffix(".csv")
    table = pd.read_parquet(source)
    table[table["id"].astype(str).isin(set(ids))].to_parquet(out.with_suffix(".parquet"))
    return out.with_suffix(".parquet")


def predict(ckpt: Path, test_file: Path, out: Path, cache: Path, tta: str, bf16: bool) -> Path:
    """What ``python -m arena.predict ckpt=<ckpt> data.test_file=<test_file> tta=<tta>
    [autocast=bfloat16]`` does, in this process (its start-up is most of its time here)."""
    overrides = [f"ckpt={ckpt}", f"data.test_file={test_file}", f"tta={tta}"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[*overrides, *(["autocast=bfloat16"] if bf16 else [])])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(out), str(cache)
    predict_run(cfg)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fidelity_cache")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_as_shipped(experiment: str, cache: Path, tmp_path: Path) -> None:
    cfg = shipped(experiment)
    overrides, source = fixture_overrides(cfg, tmp_path / "data")
    overrides = [*cpu_overrides(cfg), *overrides]
    unexpected = sorted(k for k in changed_keys(cfg, shipped(experiment, tuple(overrides)))
                        if not allowed(k))  # fmt: skip
    assert not unexpected, f"{experiment} changed beyond the named substitutions: {unexpected}"

    run_dir = tmp_path / "run"
    run("arena.train", [f"experiment={experiment}", *overrides, f"hydra.run.dir={run_dir}",
                        f"paths.cache_dir={cache}"])  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] >= 1 and np.isfinite(summary["val/log_loss"])
    weights = load_file(run_dir / "checkpoints" / "final" / "trainable.safetensors")
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}  # fp32 trained weights
    if cfg.data.teachers:
        assert set(summary["teachers"]) == {t.name for t in cfg.data.teachers}

    oof = pd.read_parquet(run_dir / "oof.parquet")
    tta = "full" if cfg.callbacks.oof_writer.tta and cfg.data.val_tta else "none"
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    val = rows_of(source, oof["id"], tmp_path / "val")
    predicted = predict(run_dir, val, tmp_path / "predict", cache, tta=tta, bf16=bf16)
    probs = pd.read_parquet(predicted / "probs.parquet").set_index("id").loc[oof["id"]]
    columns = [c for c in oof.columns if c.startswith("prob_")]
    gap = np.abs(probs[columns].to_numpy() - oof[columns].to_numpy()).max()
    assert gap < (2e-3 if bf16 else 1e-5), f"reloaded probabilities differ by {gap}"


RECIPES = sorted(p.stem for p in (CONF / "recipe").glob("*.yaml"))
#: What the recipe tests change, and why: the data, the number of folds and the training length
#: (twins=true makes the rest).
RECIPE_FIXTURES: dict[str, tuple[object, str]] = {
    "data.synthetic.n_train": (160, "160 synthetic training pairs"),
    "data.synthetic.n_test": (40, "40 held-out pairs"),
    "data.synthetic.n_external": (80, "80 external pairs for post-pretraining"),
    "data.synthetic.n_unlabeled": (40, "40 unlabeled pairs"),
    "recipe.n_folds": (2, "2 folds instead of 5"),
    "recipe.train_args": ("['trainer.max_steps=2']", "2 optimizer steps per training run"),
}


def shipped_recipe(recipe: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("pipeline", overrides=[f"recipe={recipe}"]).recipe


def run_recipe(recipe: str, out: Path, cache: Path, *more: str) -> dict[str, Any]:
    """``python -m arena.pipeline recipe=<recipe> twins=true`` with the RECIPE_FIXTURES."""
    args = [f"recipe={recipe}", "twins=true", f"output_dir={out}", f"paths.cache_dir={cache}",
            *(f"{k}={v}" for k, (v, _) in RECIPE_FIXTURES.items()), *more]  # fmt: skip
    run("arena.pipeline", args, timeout=1200)
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def modules(summary: dict[str, Any]) -> list[str]:
    """The ``python -m <module>`` of every command a pipeline run made, in order."""
    return [c.split()[2] for c in summary["commands"]]


@pytest.mark.parametrize("recipe", [r for r in RECIPES if shipped_recipe(r).kind == "distill"])
def test_distill_recipe_runs_as_shipped_then_resumes(
    recipe: str, cache: Path, tmp_path: Path
) -> None:
    """``python -m arena.pipeline recipe=<name> twins=true``: post-pretraining (merged into a new
    base), teachers x K folds, the distilled student x K folds, fold merge, quantized predict with
    TTA; the same command again resumes with nothing left to run."""
    out, shipped_ = tmp_path / "pipeline", shipped_recipe(recipe)
    summary = run_recipe(recipe, out, cache)
    assert set(summary["teachers"]) == set(shipped_.teachers)
    assert [s["fold"] for s in summary["students"]] == [0, 1]
    for student in summary["students"]:
        student_run = json.loads((Path(student["run_dir"]) / "summary.json").read_text())
        assert len(student_run["teachers"]) == len(shipped_.teachers)  # their OOF stores
    for key in ("acc", "log_loss", "ensemble_acc", "ensemble_log_loss"):
        assert np.isfinite(summary["merged"][key]), key
    assert summary["quantized"]["bits"] == shipped_.quantize_bits
    sub = pd.read_csv(out / "submission.csv")
    assert len(sub) == 40 and np.allclose(sub.iloc[:, 1:].sum(1), 1, atol=1e-5)
    pre = dict(shipped_.post_pretrain)
    assert set(summary["post_pretrain"]) == set(pre)
    for experiment, stage in summary["post_pretrain"].items():
        assert np.isfinite(stage["acc"])  # validated on the official training pairs
        fold_spec = yaml.safe_load(
            (
                out / "logs/train" / experiment / "multirun_pipeline/fold0/.hydra/config.yaml"
            ).read_text()
        )["backbone"]["spec"]
        assert fold_spec["path"] == stage["base"] and not fold_spec["random_init"]
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
            p.name for p in Path(stage["base"]).iterdir()
        }
    expected = []  # each model's post-pretraining is merged into its base before its folds
    for name in [*shipped_.teachers, shipped_.student]:
        expected += ["arena.train", "arena.merge"] * (name in pre) + ["arena.train"]
    expected += ["arena.train"] * bool(shipped_.control) + ["arena.merge", "arena.predict"]
    assert modules(summary) == expected

    again = run_recipe(recipe, out, cache)  # every stage complete: nothing runs twice
    assert again["commands"] == [] and again["merged"] == summary["merged"]


@pytest.mark.parametrize(
    "recipe", [r for r in RECIPES if shipped_recipe(r).kind == "semi_supervised"]
)
def test_semi_supervised_recipe_runs_as_shipped_then_resumes(
    recipe: str, cache: Path, tmp_path: Path, decoders: dict[str, Path]
) -> None:
    """``python -m arena.pipeline recipe=<name> twins=true`` with pairs generated by tiny random
    decoders (prompts synthesized, then answered): the label-correction folds, round 0, then
    each round soft-labels the generated pairs and trains from the last round's weights,
    validated on the same official fold; the same command again runs nothing."""
    out, shipped_ = tmp_path / "pipeline", shipped_recipe(recipe)
    generate = (f"recipe.generate={{generators: [{decoders['chat']},{decoders['base']}], "
                f"prompt_generator: {decoders['chat']}, n_prompts: 12, max_new_tokens: 8, "
                "prompt_max_new_tokens: 12}")  # fmt: skip
    # models trained 2 steps label near-uniformly: the guard would (rightly) stop round 1
    allow = "recipe.pseudo_label.allow_uninformative=true"
    summary = run_recipe(recipe, out, cache, generate, allow)
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == list(range(shipped_.rounds + 1))
    n_val = {r["n_val"] for r in rounds}
    assert len(n_val) == 1 and all(np.isfinite(r["acc"]) for r in rounds)  # the same official rows
    generated = pd.read_parquet(summary["unlabeled_file"])
    assert 0 < len(generated) <= 12 and (generated["response_a"].str.len() > 0).all()
    for r in rounds[1:]:
        run_cfg = yaml.safe_load((Path(r["run_dir"]) / ".hydra/config.yaml").read_text())
        assert run_cfg["init_from"] == rounds[r["round"] - 1]["run_dir"]
        pseudo = pd.read_parquet(run_cfg["data"]["extra_train_files"][-1])
        assert set(pseudo["id"]) <= set(generated["id"]) and r["soft_labels"]["rows_written"]
    if shipped_.label_correction:
        assert np.isfinite(summary["label_correction"]["acc"])
        corrected = json.loads((Path(rounds[0]["run_dir"]) / "summary.json").read_text())
        assert corrected["label_correction"]["rows_corrected"] > 0

    again = run_recipe(recipe, out, cache, generate, allow)
    assert again["commands"] == [] and again["rounds"] == rounds


def test_distillation_reads_the_newest_teacher_sweep_and_keeps_it_on_resume(
    cache: Path, tmp_path: Path
) -> None:
    logs, data = tmp_path / "logs", tmp_path / "data"
    train = pair_file(data, 3, seed=1)

    def sweep(teacher: str, started: str) -> Path:
        made = teacher_sweep(data / started, teacher, ids_of(train), 3)
        return made.rename(logs / "train" / teacher / f"multirun_{started}")

    (logs / "train" / "teacher_tiny_llama").mkdir(parents=True)
    (logs / "train" / "teacher_tiny_gemma2").mkdir(parents=True)
    sweep("teacher_tiny_gemma2", "2026-12-01_09-00-00")
    sweep("teacher_tiny_llama", "2026-12-01_09-00-00")
    second = sweep("teacher_tiny_llama", "2026-12-02_09-00-00")  # a rerun of the teacher
    run_dir = tmp_path / "student"
    args = ["experiment=distill_tiny_qwen2", f"data.train_files=[{train}]", "trainer.max_steps=2",
            f"paths.log_dir={logs}", f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={cache}"]  # fmt: skip
    run("arena.train", args)
    read = json.loads((run_dir / "summary.json").read_text())["teachers"]
    assert [Path(f).parents[1] for f in read["teacher_tiny_llama"]] == [second]

    sweep("teacher_tiny_llama", "2026-12-03_09-00-00")  # appears while the student is resumed
    run("arena.train", [*args, "ckpt_path=last"])
    assert json.loads((run_dir / "summary.json").read_text())["teachers"] == read

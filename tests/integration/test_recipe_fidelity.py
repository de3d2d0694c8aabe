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
    "data.val_files": "a second 64-pair file (experiments that validate on files of their own)",
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
    if cfg.data.val_files:
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
#: What the recipe tests change: the data and the training length (twins=true makes the rest).
RECIPE_FIXTURES = [
    "data.synthetic.n_train=160",
    "data.synthetic.n_test=40",
    "recipe.train_args=['trainer.max_steps=2']",
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_as_shipped_then_resumes(recipe: str, cache: Path, tmp_path: Path) -> None:
    """``python -m arena.pipeline recipe=<name> twins=true``: teachers x K folds, the distilled
    student x K folds, fold merge, quantized predict with TTA; the same command again resumes
    with nothing left to run."""
    out = tmp_path / "pipeline"
    args = [f"recipe={recipe}", "twins=true", f"output_dir={out}", *RECIPE_FIXTURES,
            f"paths.cache_dir={cache}"]  # fmt: skip
    run("arena.pipeline", args, timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    with initialize_config_dir(str(CONF), version_base="1.3"):
        shipped_recipe = compose("pipeline", overrides=[f"recipe={recipe}"]).recipe
    assert set(summary["teachers"]) == set(shipped_recipe.teachers)
    assert [s["fold"] for s in summary["students"]] == list(range(shipped_recipe.n_folds))
    for student in summary["students"]:
        student_run = json.loads((Path(student["run_dir"]) / "summary.json").read_text())
        assert len(student_run["teachers"]) == len(shipped_recipe.teachers)  # their OOF stores
    for key in ("acc", "log_loss", "ensemble_acc", "ensemble_log_loss"):
        assert np.isfinite(summary["merged"][key]), key
    assert summary["quantized"]["bits"] == shipped_recipe.quantize_bits
    sub = pd.read_csv(out / "submission.csv")
    assert len(sub) == 40 and np.allclose(sub.iloc[:, 1:].sum(1), 1, atol=1e-5)
    assert [c.split()[2] for c in summary["commands"]] == ["arena.train"] * (
        len(shipped_recipe.teachers) + 1
    ) + ["arena.merge", "arena.predict"]

    run("arena.pipeline", args)  # every stage complete: nothing runs twice
    again = json.loads((out / "summary.json").read_text())
    assert again["commands"] == [] and again["merged"] == summary["merged"]


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

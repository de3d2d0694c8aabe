"""The notebooks run top to bottom in a real kernel (nbclient) on small data: the EDA notebook on a
synthetic 3-class file and on a few hundred HH rows (skipped without ../shared/data), the
comparison notebook on a fake 2-config x 2-fold sweep with an offline W&B run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from arena.data.synthetic import make_synthetic
from tests.conftest import ROOT, SHARED_DATA
from tests.helpers import write_wsdm
from tests.integration.test_report import GOOD, make_sweep

NOTEBOOKS = ROOT / "notebooks"
HH_FILE = SHARED_DATA / "wsdm" / "hh_helpful_base.parquet"


def execute(
    name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    """Run ``notebooks/<name>`` in a fresh kernel (it inherits ``env``) from ``notebooks/``."""
    for key, value in {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **env}.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        f"{name}: outputs must be stripped"
    )
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[int, str]:
    """(number of PNG figures shown, all text output joined)."""
    images, text = 0, []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            images += "image/png" in out.get("data", {})
            text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return images, "\n".join(text)


def test_eda_notebook_on_synthetic_3_class_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = make_synthetic(300, seed=1, n_classes=3)
    path = write_wsdm(pairs, tmp_path / "synthetic.parquet", join_turns=False)
    pd.read_parquet(path).assign(
        model_a=pairs["model_a"], model_b=pairs["model_b"], language=pairs["language"]
    ).to_parquet(path)
    notebook = execute("01_eda.ipynb", {"ARENA_EDA_FILE": str(path)}, monkeypatch)
    images, text = outputs(notebook)
    assert images == 6  # labels, lengths, languages, win rates, longer wins, position
    assert "tie" in text and "mistral-large" in text


@pytest.mark.skipif(not HH_FILE.is_file(), reason="../shared/data is not on this machine")
def test_eda_notebook_on_real_hh_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hh_300.parquet"
    pd.read_parquet(HH_FILE).head(300).to_parquet(path)
    notebook = execute("01_eda.ipynb", {"ARENA_EDA_FILE": str(path)}, monkeypatch)
    images, text = outputs(notebook)
    assert images == 5 and "no model names in this file" in text  # HH names no models


def test_compare_notebook_on_a_sweep_with_a_wandb_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    sweep = make_sweep(tmp_path)
    run = wandb.init(project="arena", dir=sweep / "0_fold0", name="fold0", mode="offline")
    for step in range(3):
        run.log({"val/log_loss": 0.6 - 0.1 * step, "trainer/global_step": 10 * step})
    run.finish()
    wandb.teardown()  # finish() can return before the service has flushed the run file
    notebook = execute("02_compare_runs.ipynb", {"ARENA_RUNS": str(sweep)}, monkeypatch)
    images, text = outputs(notebook)
    # 2 per fold, 1 per hparam, language, swap, calibration, 1 W&B curve
    assert images == 7
    assert f"best by val/log_loss (min): {GOOD}" in text
    assert "1 runs logged to W&B" in text

"""``arena.predict`` and training on files they cannot use: unreadable files are DataErrors named
before any model loads, an empty training file is an error naming it, an empty test file gives an
empty submission, a failed predict leaves no complete-looking result, and batches follow a token
budget by default."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.predict import predict_run
from tests.conftest import CONF
from tests.helpers import lmsys_test_file


def predict_cfg(test_file: Path, tmp_path: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", [f"ckpt={tmp_path / 'no_model'}", f"data.test_file={test_file}",
                                  *overrides])  # fmt: skip
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
    return cfg


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "well-formed csv"),
        ("broken.csv", b'id,prompt,response_a,response_b\n1,"p,a,b\n', "well-formed csv"),
        ("truncated.parquet", None, "well-formed parquet"),
        ("broken.jsonl", b'{"id": "1", "prompt": \n', "broken JSON line"),
    ],
)
def test_predict_reports_unreadable_files_as_data_errors(
    name: str, content: bytes | None, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    if content is None:  # a parquet file cut short
        good = tmp_path / "good.parquet"
        make_synthetic(8, seed=1).assign(prompt=lambda t: t["prompt"].map(json.dumps)).drop(
            columns=["soft_label"]
        ).to_parquet(good)
        content = good.read_bytes()[:-40]
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        predict_run(predict_cfg(path, tmp_path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("kind", ["schema-only.parquet", "header-only.csv"])
def test_training_on_an_empty_file_is_an_error_naming_it(kind: str, tmp_path: Path) -> None:
    from arena.data import Template
    from arena.lit import PreferenceDataModule
    from arena.models import TINY_ARCH, BackboneSpec, load_tokenizer

    path = tmp_path / kind
    empty = pd.DataFrame(columns=["id", "prompt", "response_a", "response_b", "winner"])
    empty.to_parquet(path) if path.suffix == ".parquet" else empty.to_csv(path, index=False)
    spec = BackboneSpec(
        name="tiny_qwen2", kind="decoder", arch=TINY_ARCH["qwen2"], random_init=True
    )
    dm = PreferenceDataModule(load_tokenizer(spec, tmp_path), Template(), train_files=[str(path)],
                              cache_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(DataError, match=f"{path}.*expected training rows outside fold 0"):
        dm.setup("fit")


@pytest.mark.parametrize("chunk_rows", ["8192", "null"])
def test_an_empty_test_file_gives_an_empty_submission(
    chunk_rows: str, ckpts: dict[str, Path], tmp_path: Path, caplog
) -> None:
    path = tmp_path / "empty_test.csv"
    path.write_text("id,prompt,response_a,response_b\n")
    cfg = predict_cfg(path, tmp_path, f"ckpt={ckpts['linear2']}", f"chunk_rows={chunk_rows}",
                      f"paths.cache_dir={ckpts['linear2'].parent / 'cache'}")  # fmt: skip
    with caplog.at_level("WARNING"):
        summary = predict_run(cfg)
    assert summary["n_rows"] == 0 and "no rows" in caplog.text
    submission = pd.read_csv(tmp_path / "out" / "submission.csv")
    assert list(submission.columns) == ["id", "winner"] and len(submission) == 0
    assert len(pd.read_parquet(tmp_path / "out" / "probs.parquet")) == 0


def test_a_failed_predict_leaves_no_complete_looking_result(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("summary.json", "submission.csv", "probs.parquet"):
        (out / name).write_text(f"the previous run's {name}")
    (out / ".submission.csv.x1.tmp").write_text("left by a killed run")
    path = lmsys_test_file(tmp_path, n=60)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[45, "id"] = frame.loc[2, "id"]  # found in the third chunk, after writing began
    frame.to_csv(path, index=False)
    cfg = predict_cfg(path, tmp_path, f"ckpt={ckpts['linear2']}", "chunk_rows=16",
                      f"paths.cache_dir={ckpts['linear2'].parent / 'cache'}")  # fmt: skip
    with pytest.raises(DataError, match="duplicate id"):
        predict_run(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["previous"]  # nothing stale, no temp files
    assert (out / "previous" / "summary.json").read_text() == "the previous run's summary.json"


def test_predict_batches_by_a_token_budget_by_default(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    import numpy as np
    import torch

    from arena.data.batching import sorted_batches
    from arena.predict import load_ensemble

    cfg = predict_cfg(lmsys_test_file(tmp_path), tmp_path, f"ckpt={ckpts['linear2']}",
                      f"paths.cache_dir={ckpts['linear2'].parent / 'cache'}")  # fmt: skip
    member = load_ensemble(cfg, torch.device("cpu")).members[0]
    budget, cap = member.max_tokens, member.batch_size
    assert budget is not None
    short = sorted_batches(np.full(2000, 40), budget, cap, 0, 1)  # short rows: big batches
    long = sorted_batches(np.full(64, 2048), budget, cap, 0, 1)  # long rows: a few each
    assert min(len(b) for b in short[:-1]) > 256 and max(len(b) for b in long) == budget // 2048

"""The command lines as subprocesses: quickstart outputs, a 2-point multirun, DDP and FSDP on CPU,
W&B offline files, and refusing to overwrite a finished run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT

SMALL = [
    "data.synthetic.n=240",
    "data.budget.max_length=96",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]


def train(
    args: list[str], tmp_path: Path, timeout: int = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "arena.train", *args, f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def check_run_dir(run: Path, n_rows: int) -> dict:
    assert (run / ".hydra" / "config.yaml").exists()
    summary = json.loads((run / "summary.json").read_text())
    for key in (
        "val/acc",
        "val/log_loss",
        "fold",
        "n_train",
        "n_val",
        "train_seconds",
        "train_samples_per_second",
    ):
        assert key in summary, key
    assert summary["n_train"] + summary["n_val"] == n_rows
    oof = pd.read_parquet(run / "oof.parquet")
    assert list(oof.columns) == ["id", "fold", "prob_model_a", "prob_model_b", "label", "language"]
    assert len(oof) == summary["n_val"] and (oof["fold"] == summary["fold"]).all()
    assert ((oof["prob_model_a"] + oof["prob_model_b"] - 1).abs() < 1e-5).all()
    ckpt = run / "checkpoints"
    assert (ckpt / "final" / "trainable.safetensors").exists() and (ckpt / "last.ckpt").exists()
    return summary


def test_quickstart_writes_every_artifact(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train([f"hydra.run.dir={run}", *SMALL], tmp_path)
    check_run_dir(run, 240)
    with pytest.raises(AssertionError, match="finished run"):
        train([f"hydra.run.dir={run}", *SMALL], tmp_path)


def test_two_fold_multirun_covers_rows_once(tmp_path: Path) -> None:
    # launched from tmp_path with no path overrides, as a user would: the sweeper itself resolves
    # the default sweep dir, <launch dir>/logs/train/<experiment>/multirun_<time>
    logs = tmp_path / "logs"
    train(["-m", "data.n_folds=2", "data.fold=0,1", *SMALL], tmp_path, cwd=tmp_path)
    (sweep,) = (logs / "train" / "quickstart").glob("multirun_*")
    runs = sorted(p for p in sweep.iterdir() if (p / "summary.json").exists())
    assert len(runs) == 2
    oofs = [pd.read_parquet(r / "oof.parquet") for r in runs]
    ids = pd.concat([o["id"] for o in oofs])
    assert ids.is_unique and len(ids) == 240  # disjoint folds covering every row once


LORA = ["+model.model_factory.lora={r: 4, alpha: 8, dropout: 0.0}"]
# the trainers' own precision (bf16-mixed) over a bf16 base, as the GPU recipes run
TWO_CPU = ["trainer.accelerator=cpu", "backbone.spec.dtype=bfloat16", *SMALL]


@pytest.mark.parametrize(
    ("trainer", "extra"),
    [("ddp", []), ("fsdp", [*LORA, "backbone.spec.activation_checkpointing=true"])],
)
def test_two_process_cpu(trainer: str, extra: list[str], tmp_path: Path) -> None:
    run = tmp_path / trainer
    train(
        [f"hydra.run.dir={run}", f"trainer={trainer}", "trainer.devices=2", *TWO_CPU, *extra],
        tmp_path,
    )
    summary = check_run_dir(run, 240)
    assert summary["n_val"] > 0
    weights = load_file(run / "checkpoints" / "final" / "trainable.safetensors")
    assert weights and all(v.abs().sum() > 0 for v in weights.values())
    # FSDP2 shards units that mix bf16 frozen and fp32 trained weights; both keep fp32 training
    assert {v.dtype for v in weights.values()} == {torch.float32}
    if extra:  # LoRA under FSDP: only the adapters and the head were gathered and saved
        assert all("lora_" in k or k.startswith("head.") for k in weights)


def test_two_torchrun_nodes_on_loopback(tmp_path: Path) -> None:
    """Multi-node as far as one machine allows: two torchrun "nodes" of one process each."""
    run = tmp_path / "nodes"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    args = [
        f"hydra.run.dir={run}",
        "trainer=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        *TWO_CPU,
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--master-addr=127.0.0.1",
        "--master-port=29533",
    ]
    procs = [
        subprocess.Popen(
            [*torchrun, f"--node-rank={rank}", "-m", "arena.train", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    check_run_dir(run, 240)


def wandb_records(path: Path) -> list[bytes]:
    """Records of an offline ``run-*.wandb`` file: a LevelDB-style log of 32 KiB blocks after a
    7-byte header, each chunk ``crc32 (4) | length (2, LE) | type (1: full, 2: first, 3: middle,
    4: last) | payload``."""
    data, records, pos, partial = path.read_bytes(), [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        partial = payload if kind in (1, 2) else partial + payload
        if kind in (1, 4):
            records.append(partial)
    return records


def test_wandb_offline_files_hold_the_metrics(tmp_path: Path) -> None:
    from wandb.proto import wandb_internal_pb2

    run = tmp_path / "wandb_run"
    train([f"hydra.run.dir={run}", "logger=wandb", *SMALL], tmp_path)
    (path,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    logged: dict[str, float] = {}
    for raw in wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                logged[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    summary = json.loads((run / "summary.json").read_text())
    assert abs(logged["val/acc"] - summary["val/acc"]) < 1e-6
    assert abs(logged["val/log_loss"] - summary["val/log_loss"]) < 1e-6
    assert "train/total" in logged


def test_optuna_sweep_uses_the_returned_metric(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    train(
        [
            "-m",
            "hparams_search=optuna",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *SMALL,
        ],
        tmp_path,
    )
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best and "optimizer.lr" in best
    assert len(list(sweep.glob("*/summary.json"))) == 2


RESUMABLE = [
    *SMALL,
    "data.synthetic.n=480",
    "trainer.max_epochs=2",
    "callbacks.model_checkpoint.every_n_epochs=null",
    "callbacks.model_checkpoint.every_n_train_steps=3",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    train([f"hydra.run.dir={tmp_path / 'run'}", *RESUMABLE], tmp_path)
    return json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_signal_then_resume_matches_an_uninterrupted_run(
    signum: int, uninterrupted: dict, tmp_path: Path
) -> None:
    """Stop a run mid-epoch, rerun with ckpt_path=last: same final metrics as no stop. SIGTERM
    (SIGINT alike) stops it at the next step with a checkpoint, an interrupted summary and exit
    status 143; SIGKILL leaves the last periodic checkpoint."""
    args = RESUMABLE
    run = tmp_path / "stopped"
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "-m",
        "arena.train",
        f"hydra.run.dir={run}",
        *args,
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last, step = run / "checkpoints" / "last.ckpt", 0
    while proc.poll() is None and step < 27:  # 24 steps per epoch: stop inside the second
        time.sleep(0.2)
        with contextlib.suppress(Exception):
            step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    proc.send_signal(signum)
    code = proc.wait()
    assert 24 < step < 48
    if signum == signal.SIGKILL:
        assert not (run / "summary.json").exists(), "the run ended before it could be killed"
    else:
        assert code == 128 + signum
        stopped = json.loads((run / "summary.json").read_text())
        assert (
            stopped["status"] == "interrupted" and stopped["signal"] == signal.Signals(signum).name
        )
        saved = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
        assert saved == stopped["global_step"] >= step  # saved at the stop, not 3 steps before
    train([f"hydra.run.dir={run}", *args, "ckpt_path=last"], tmp_path)
    got = json.loads((run / "summary.json").read_text())
    want = uninterrupted
    assert got["status"] == "finished"
    assert got["global_step"] == want["global_step"] == 48
    for key in ("val/acc", "val/log_loss", "val/acc_tta", "val/swap_consistency"):
        assert abs(got[key] - want[key]) < 1e-6, (key, got[key], want[key])


def test_a_refused_rerun_leaves_the_finished_run_untouched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train([f"hydra.run.dir={run}", *SMALL], tmp_path)
    record = {p: p.read_bytes() for p in sorted((run / ".hydra").iterdir())}
    assert (run / ".hydra" / "config.yaml") in record and not (run / ".hydra_pending").exists()
    with pytest.raises(AssertionError, match="finished run"):
        train([f"hydra.run.dir={run}", *SMALL, "seed=123", "optimizer.lr=1.0"], tmp_path)
    assert {p: p.read_bytes() for p in sorted((run / ".hydra").iterdir())} == record
    assert not (run / ".hydra_pending").exists()


def test_a_run_dir_is_held_by_one_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(  # holds the run dir's lock as a running training would
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('process 1 on a node'); f.flush(); "
         "print('held', flush=True); time.sleep(60)", str(run / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AssertionError, match="is in use by process 1 on a node"):
            train([f"hydra.run.dir={run}", *SMALL], tmp_path)
    finally:
        holder.kill()
    assert not (run / "summary.json").exists()

"""What a command prints: known third-party noise dropped message by message (other records and
warnings still pass), the collapse warning's wording during and at the end of fit, the parameter
summary and the result line."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import arena  # noqa: F401 - installs the filters under test
from arena.callbacks import OOFWriter
from arena.callbacks.summary import parameter_table
from arena.data.synthetic import make_synthetic
from arena.lit.metrics import check_warning, collapse_check
from arena.models.lora import apply_lora
from arena.utils.console import result_line
from tests.conftest import ROOT

KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ..."


class Records(logging.Handler):
    """Keeps the records that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


def _attached(logger: logging.Logger) -> Records:
    handler = Records()
    logger.addHandler(handler)
    return handler


def test_bitsandbytes_kernel_notice_dropped_other_records_pass() -> None:
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    handler = _attached(logger)
    try:
        logger.warning(KERNEL_NOTICE, "No module named 'kernels'")
        logger.warning("Failed to load the CPU library: %s", "libbitsandbytes_cpu.so")
        logger.error("gemm_4bit_forward returned NaN")
    finally:
        logger.removeHandler(handler)
    assert handler.messages() == [
        "Failed to load the CPU library: libbitsandbytes_cpu.so",
        "gemm_4bit_forward returned NaN",
    ]


def _stderr_of(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


# bitsandbytes' import (its kernel notice) and Lightning's batch flattening (torch's LeafSpec
# deprecation), in a fresh process: pytest undoes warning filters set while it collects tests
NOISY = (
    "import warnings, bitsandbytes; from lightning.pytorch.utilities._pytree import _tree_flatten; "
    "_tree_flatten(1); warnings.warn('a real FutureWarning', FutureWarning)"
)


def test_known_noise_is_silent_once_arena_is_imported() -> None:
    quiet = _stderr_of(f"import arena; {NOISY}")
    assert "gemm_4bit_forward" not in quiet and "LeafSpec" not in quiet
    assert "a real FutureWarning" in quiet
    # without arena the same calls do warn (bitsandbytes only on CPUs with AVX512-BF16; the
    # logger's filter is tested above whatever the CPU)
    assert "LeafSpec" in _stderr_of(NOISY)


def test_lightning_advert_dropped_its_other_lines_kept() -> None:
    # the records Lightning's rank_zero_info emits on every Trainer: its advert and its own lines
    # (a whole run's console and train.log: tests/integration/test_console_cli.py)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        handler = Records()
        for text in (
            "💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger",
            "💡 Tip: For seamless cloud uploads and versioning, try installing litmodels",
            "GPU available: False, used: False",
        ):
            record = logger.makeRecord(name, logging.INFO, __file__, 0, text, (), None)
            if logger.filter(record):  # what the logger's filters let through to any handler
                handler.handle(record)
        assert handler.messages() == ["GPU available: False, used: False"], name


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_raises_no_checkpointing_deprecation(checkpointing: bool) -> None:
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        apply_lora(
            Qwen2Model(config),
            r=2,
            alpha=4,
            dropout=0.0,
            targets=("q_proj",),
            quantized=False,
            activation_checkpointing=checkpointing,
        )
    assert not [w for w in shown if "checkpointing" in str(w.message)]


def test_collapse_message_says_so_far_during_fit_and_nothing_learned_at_the_end() -> None:
    labels = np.array([0, 1] * 50)
    probs = np.full((100, 2), 0.5)
    loss = float(np.log(2))
    checks = collapse_check(probs, labels, loss)
    during = check_warning(checks, loss, step=20)
    final = check_warning(checks, loss)
    assert during is not None and final is not None
    assert "after 20 steps" in during and "still" in during
    assert "nothing was learned" not in during
    assert "nothing was learned" in final and "still" not in final
    # ranks the classes but overconfident: "not yet" during fit, miscalibrated at the end
    sure = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    sure[::3] = sure[::3, ::-1]  # a third wrong with 0.9: log loss above the prior's
    checks = collapse_check(sure, labels, float(-np.log(sure[np.arange(100), labels]).mean()))
    during = check_warning(checks, 0.9, step=20)
    assert during is not None and "yet" in during and "miscalibrated" not in during
    assert "miscalibrated" in (check_warning(checks, 0.9) or "")


def _validate(writer: OOFWriter, probs: torch.Tensor, fn: str, step: int) -> None:
    """One ``on_validation_end`` of ``writer`` over ``len(probs)`` synthetic rows."""
    val = make_synthetic(len(probs)).assign(fold=0)
    module = SimpleNamespace(val_predictions={"index": torch.arange(len(probs)), "probs": probs})
    trainer = SimpleNamespace(
        sanity_checking=False,
        global_step=step,
        is_global_zero=True,
        datamodule=SimpleNamespace(val_df=val),
        state=SimpleNamespace(fn=fn),
    )
    writer.on_validation_end(trainer, module)  # type: ignore[arg-type]


def test_oof_writer_warns_so_far_during_fit_and_leaves_the_verdict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = OOFWriter(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="arena.callbacks.oof"):
        _validate(writer, torch.full((40, 2), 0.5), "fit", step=7)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "arena.callbacks.oof"]
    assert message.startswith("after 7 steps the validation predictions still sit at the class")
    assert "nothing was learned" in (writer.verdict() or "")
    # the run goes on to learn: no warning, and no verdict at the end
    caplog.clear()
    labels = make_synthetic(40)["label"].to_numpy()
    learned = torch.tensor(np.where(labels[:, None] == np.arange(2), 0.9, 0.1))
    with caplog.at_level(logging.WARNING, logger="arena.callbacks.oof"):
        _validate(writer, learned, "fit", step=50)
    assert not [r for r in caplog.records if r.name == "arena.callbacks.oof"]
    assert writer.verdict() is None


def test_parameter_table_lists_only_modules_with_parameters() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU())
            self.head = torch.nn.Linear(20, 2)
            self.loss = torch.nn.CrossEntropyLoss()

    net = Net()
    net.body.requires_grad_(False)
    table = parameter_table(net, max_depth=1).splitlines()
    assert table[0] == "42 trainable of 262 parameters"
    assert [line.split() for line in table[1:]] == [
        ["body", "Sequential", "220"],
        ["head", "Linear", "42"],
    ]
    deeper = parameter_table(net, max_depth=2)
    assert "body.0" in deeper and "body.1" not in deeper and "FLOPs" not in deeper


def test_result_line(tmp_path: Path) -> None:
    summary = {
        "val/acc": 0.81234567,
        "val/log_loss": 0.4309,
        "val/swap_consistency": 0.95,
        "val/ece": 0.01,
        "collapsed": False,
    }
    assert result_line(summary, tmp_path) == (
        f"val/acc 0.812  val/log_loss 0.431  val/swap_consistency 0.950  (collapsed: no) -> "
        f"{tmp_path.resolve()}"
    )
    assert "(collapsed: YES)" in result_line({**summary, "collapsed": True}, tmp_path)
    bare = result_line({"global_step": 4}, tmp_path)
    assert bare == f"no validation metrics after 4 steps -> {tmp_path.resolve()}"

"""``arena.bench``: every section in quick mode on tiny inputs (tiny BERT twin, synthetic rows),
the JSON layout, and that the equivalence checks and targets can fail. No absolute times."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from arena.bench import gpu, gpu_models, scaling, train_batching, tta
from arena.bench.__main__ import main, parse
from arena.bench.common import Settings, equivalence, speedup
from arena.bench.inputs import ModelKit, build_kit, encode, load_table, sample_rows
from arena.bench.report import TARGETS, judge, table
from arena.bench.scaling_worker import Pipeline
from arena.bench.suite import run_suite
from arena.bench.tokenization import cache_comparison, joined_text
from arena.data.batching import pack
from arena.models import build_backbone

REQUIRED = (
    "train_loop.lightning_vs_plain",
    "train_batching.token_budget_vs_fixed",
    "inference_batching.token_budget_vs_pad_to_max",
    "tokenization.cache_hit_vs_miss",
    "tokenization.formatter_vs_raw_encode",
    "scaling.peak_memory_ratio_16x_vs_1x",
)
GPU_VARIANTS = {"train_padded", "train_packed", "score_padded", "score_packed"}
# single-threaded, as the suite runs by default (``Settings.threads``); fixture in conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("bench")
    return Settings(quick=True, backbone="tiny", data_dir=root / "no-data", work_dir=root / "work")


@pytest.fixture(scope="module")
def kit(settings: Settings) -> ModelKit:
    return build_kit(settings)


@pytest.fixture(scope="module")
def result(settings: Settings) -> dict[str, Any]:
    sections = ["train_loop", "train_batching", "inference_batching", "tokenization", "tta", "gpu"]
    return run_suite(settings, only=sections)


def test_sections_report_ratios_raw_timings_and_load(result: dict[str, Any]) -> None:
    for key in REQUIRED[:-1]:
        assert math.isfinite(result["ratios"][key]) and result["ratios"][key] > 0
    assert "train_loop.hf_trainer_vs_plain" in result["ratios"]
    for name, section in result["sections"].items():
        assert len(section["loadavg"]["start"]) == 3 and section["seconds"] > 0
        for variant in section.get("raw", {}).get("seconds", {}).values():
            assert len(variant["samples"]) >= 3 and variant["min"] <= variant["median"]
        assert section.get("skipped") or section["raw"], name
    assert result["sections"]["train_batching"]["raw"]["data"] == "synthetic"


def test_every_equivalence_check_holds(result: dict[str, Any]) -> None:
    for key, target in result["targets"].items():
        assert target["equivalent"], key
    loop = result["sections"]["train_loop"]["equivalence"]
    assert loop["max_diff"] <= 1e-5  # three loops, same loss at every step


def test_targets_and_table(result: dict[str, Any]) -> None:
    for key in REQUIRED[:-1]:
        target = result["targets"][key]
        assert target["target"] == f"{TARGETS[key][0]} {TARGETS[key][1]}"
        assert isinstance(target["pass"], bool)
    text = table(result)
    assert "train_loop.lightning_vs_plain" in text and "gpu: skipped" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only skip")
def test_gpu_section_skips_without_cuda(result: dict[str, Any]) -> None:
    assert result["sections"]["gpu"]["skipped"] == "no CUDA"


@pytest.fixture(scope="module")
def gpu_on_cpu(settings: Settings) -> dict[str, Any]:
    """The gpu section on CPU: every case on its family's tiny twin, one layer, 6 sequences."""
    return gpu.run(
        settings, device="cpu", twins=True, layers=1, n_seqs=6, max_length=64, matmul_n=64
    )


def test_gpu_section_runs_its_measurements_on_cpu(gpu_on_cpu: dict[str, Any]) -> None:
    raw, cases = gpu_on_cpu["raw"], gpu_on_cpu["raw"]["cases"]
    assert set(cases) == {c.name for c in gpu.CASES}
    assert raw["roofline"]["flops_per_second"] > 0 and raw["length_mix"]["sequences"] == 6
    for case in gpu.CASES:
        rec = cases[case.name]
        assert "error" not in rec, rec.get("traceback")
        assert rec["quantization"] == case.quantization and rec["activation_checkpointing"]
        assert rec["attention"] == {"gemma2_9b": "eager", "qwen2_5_14b": "sdpa"}[case.backbone]
        # 4-bit: the 7 LoRA targets of the one layer are bitsandbytes layers; bf16 LoRA: none
        assert rec["linear_4bit_layers"] == (7 if case.quantization == "4bit" else 0)
        assert set(rec["seconds"]) == GPU_VARIANTS and rec["params"]["trainable"] > 0
        assert rec["tokens_computed"]["packed"] < rec["tokens_computed"]["padded"]
        assert all(len(v["samples"]) == 3 for v in rec["seconds"].values())  # repeats, in time
        flops = rec["flops_per_step"]
        assert flops["train_packed"] == flops["train_padded"] > 3 * flops["score_packed"]
        assert all(0 < m < 1 for m in rec["mfu"].values())
        assert rec["logits_max_diff_padded_vs_packed"] <= 1e-4  # fp32 on CPU
        memory = rec["memory_estimate_gb"]["train_padded"]
        assert memory["estimate"] > 0 and memory["measured"] is None  # no CUDA peak here
        for kind in ("train", "score"):
            key = f"gpu.{case.name}.{kind}_packed_vs_padded"
            assert gpu_on_cpu["equivalence"][key]["ok"]
            assert gpu_on_cpu["equivalence"][key]["max_diff"] <= 1e-4
            assert gpu_on_cpu["ratios"][key] == rec["packed_vs_padded"][kind]["paired"] > 0
        assert gpu_on_cpu["ratios"][f"gpu.{case.name}.train_packed_mfu"] > 0
    json.dumps(gpu_on_cpu)  # the bench's JSON holds it as it is


def test_gpu_section_withholds_ratios_when_packing_is_wrong(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packed rows whose positions run on across sequences attend across them: the check fails
    and the packed/padded ratios are withheld while the timings stay in the raw record."""

    def leaky(seqs: Any, row_tokens: int | None = None) -> dict[str, torch.Tensor]:
        batch = pack(seqs, row_tokens)
        width = batch["position_ids"].shape[1]
        batch["position_ids"] = torch.arange(width).expand_as(batch["position_ids"]).clone()
        return batch

    monkeypatch.setattr(gpu_models, "pack", leaky)
    case = gpu.CASES[-1]
    out = gpu.run(
        settings,
        device="cpu",
        cases=[case],
        twins=True,
        layers=1,
        n_seqs=6,
        max_length=64,
        matmul_n=64,
    )
    key = f"gpu.{case.name}.train_packed_vs_padded"
    assert not out["equivalence"][key]["ok"] and out["ratios"][key] is None
    assert out["ratios"][f"gpu.{case.name}.train_packed_mfu"] is None
    assert out["raw"]["cases"][case.name]["packed_vs_padded"]["train"]["paired"] > 0


def test_gpu_section_quantizes_random_weights_as_a_load_from_disk(tmp_path: Path) -> None:
    """The in-memory 4-bit route gives the modules, quantized weights and outputs of saving the
    random weights and loading them with the QLoRA config (build_backbone's twin route)."""
    spec = gpu_models.bench_spec("gemma2_9b", None, twin=True)
    ours = gpu_models.quantized_random_backbone(spec, "4bit", torch.device("cpu"))
    disk = build_backbone(spec, cache_dir=tmp_path, quantization="4bit")
    kinds = {n: type(m).__name__ for n, m in disk.named_modules()}
    assert {n: type(m).__name__ for n, m in ours.named_modules()} == kinds
    assert list(kinds.values()).count("Linear4bit") == 14 and ours.is_loaded_in_4bit
    theirs = disk.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
    ids = torch.randint(3, 4000, (2, 24))
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids)[0], disk(input_ids=ids)[0])


def test_gpu_step_flops_count_attention_backward_and_recompute() -> None:
    arch = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "head_dim": 8}
    counts = {"total": 1100, "embedding": 100, "trainable": 10}
    lengths = np.array([3, 4])
    attention = 4 * 2 * 32 * (9 + 16)
    assert gpu_models.step_flops(counts, arch, lengths, training=False) == 2 * 1000 * 7 + attention
    matmuls = 2 * 1000 * (2 + 10 / 1000) * 7 + 2 * 1000 * 7  # backward + recompute forward
    assert gpu_models.step_flops(counts, arch, lengths, training=True) == pytest.approx(
        matmuls + 4 * attention
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_section_on_cuda_packs_exactly_and_measures_mfu(settings: Settings) -> None:
    """Two layers of each real architecture at 512 tokens on the GPU (4-bit, bf16 autocast): the
    packed rows score like the padded ones, MFU is a fraction of the peak, and the peak memory
    is measured beside its estimate."""
    out = gpu.run(settings, layers=2, n_seqs=8, max_length=512, matmul_n=4096)
    for case in gpu.CASES:
        rec = out["raw"]["cases"][case.name]
        assert "error" not in rec, rec.get("traceback")
        assert out["equivalence"][f"gpu.{case.name}.train_packed_vs_padded"]["ok"]
        assert rec["tokens_computed"]["packed"] < rec["tokens_computed"]["padded"]
        assert 0 < out["ratios"][f"gpu.{case.name}.train_packed_mfu"] < 1
        memory = rec["memory_estimate_gb"]["train_packed"]
        assert memory["measured"] > 0 and math.isfinite(memory["relative_error"])


def test_scaling_measures_three_sizes_in_fresh_processes(settings: Settings, kit: ModelKit) -> None:
    out = scaling.run(settings, kit)
    sizes = out["raw"]["sizes"]
    assert [sizes[k]["rows"] for k in ("1x", "4x", "16x")] == [32, 128, 512]
    assert out["raw"]["chunk_rows"] == 32  # 16x is read in 16 chunks
    for size in sizes.values():
        assert len(size["seconds"]["prep"]["samples"]) == 3
        assert size["streamed"]["peak_mb"]["inference"]["min"] >= 0
    ratios = out["ratios"]
    streamed = [ratios[f"scaling.{s}_peak_memory_ratio_16x_vs_1x"] for s in ("prep", "inference")]
    assert ratios["scaling.peak_memory_ratio_16x_vs_1x"] == max(streamed) > 0


def test_streamed_scaling_pipeline_scores_like_the_whole_table(settings: Settings, kit) -> None:
    table_, _ = load_table(settings)
    folder = settings.work_dir / "pipeline"
    path = scaling.write_input(sample_rows(table_, 20, 0), folder / "rows.parquet")
    kit.tokenizer.save_pretrained(str(folder / "tokenizer"))
    args = {
        "tokenizer": str(folder / "tokenizer"),
        "template": vars(kit.template),
        "max_length": 128,
        "chunk_rows": 6,
        "seed": 0,
    }
    streamed = Pipeline({**args, "mode": "streamed"})
    memory = Pipeline({**args, "mode": "memory"})
    tokens, lengths, labels = streamed.prepare(path)
    whole = memory.prepare(path)
    assert np.array_equal(tokens.ids, whole[0].ids) and np.array_equal(lengths, whole[1])
    assert np.array_equal(labels, whole[2]) and len(labels) == 20
    probs = torch.softmax(torch.from_numpy(memory.infer(path)).double(), -1).numpy()
    assert np.abs(streamed.infer(path) - probs).max() <= 1e-5


def test_padding_check_catches_a_model_that_ignores_the_mask(
    settings: Settings, kit: ModelKit
) -> None:
    class MaskBlind(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.inner(ids, torch.ones_like(mask))

    table_, _ = load_table(settings)
    data = encode(sample_rows(table_, 16, 0), kit, 512)
    shortest = np.argsort(data.lengths)[:4]
    assert data.lengths[shortest].max() < 504  # padding to 8 and to 512 differ
    plan = ([shortest.tolist()], 8)
    blind = ModelKit(kit.spec, kit.template, kit.tokenizer, MaskBlind(kit.base))  # type: ignore[arg-type]
    assert train_batching.padding_invariance(kit, data.dataset, plan, 512) <= 1e-4
    assert train_batching.padding_invariance(blind, data.dataset, plan, 512) > 1e-4


def test_a_failed_equivalence_fails_the_target() -> None:
    fast = {"train_loop.lightning_vs_plain": 1.2}
    good = {"train_loop": {"equivalence": equivalence("loss", 0.0, 1e-5)}}
    bad = {"train_loop": {"equivalence": equivalence("loss", 3e-3, 1e-5)}}
    assert judge(fast, good)["train_loop.lightning_vs_plain"]["pass"]
    verdict = judge(fast, bad)["train_loop.lightning_vs_plain"]
    assert not verdict["pass"] and not verdict["equivalent"]
    assert not judge({"train_loop.lightning_vs_plain": 0.5}, good)["train_loop.lightning_vs_plain"][
        "pass"
    ]


def test_speedup_pairs_neighbouring_runs() -> None:
    s = speedup([2.0, 4.0, 2.0], [1.0, 2.0, 1.0])
    assert s == {"paired": 2.0, "of_mins": 2.0, "of_medians": 2.0}


def test_cache_hit_returns_the_same_tokens(
    settings: Settings, kit: ModelKit, tmp_path: Path
) -> None:
    table_, _ = load_table(settings)
    out = cache_comparison(sample_rows(table_, 20, 0), kit, tmp_path, 3)
    assert out["equivalence"]["ok"] and len(out["times"]["hit"]) == 3


def test_joined_text_writes_the_template_out(kit: ModelKit, settings: Settings) -> None:
    table_, _ = load_table(settings)
    row = sample_rows(table_, 1, 0)
    text = joined_text(row, kit.template)[0]
    assert text.startswith(kit.template.prefix) and text.endswith(kit.template.suffix)
    assert row["response_b"][0][0] in text


def test_tta_curve_ends_at_full_tta_and_counts_rows(settings: Settings, tmp_path: Path) -> None:
    label, plain, back = tta.simulate(1000, 0)
    points = tta.curve(label, plain, back)
    assert [p["rows_rescored"] for p in points] == [100 * k for k in range(1, 11)]
    full = tta.metrics((plain + back) / 2, label)
    assert points[-1]["log_loss"] == pytest.approx(full["log_loss"])
    assert points[-1]["share_of_full_gain"] == pytest.approx(1.0)
    frame = {
        "label": label,
        "prob_model_a": plain[:, 0],
        "prob_model_b": plain[:, 1],
        "swapped_prob_model_a": back[:, 0],
        "swapped_prob_model_b": back[:, 1],
    }
    pd.DataFrame(frame).to_parquet(tmp_path / "p.parquet")
    out = tta.run(settings, tmp_path / "p.parquet")
    assert out["raw"]["uncertain"] == points
    assert np.isclose(out["raw"]["full"]["log_loss"], full["log_loss"])


def test_cli_parses_keys_and_writes_json(tmp_path: Path) -> None:
    s, opts = parse(["quick=true", "only=tta,gpu", f"output={tmp_path / 'b.json'}", "seed=3"])
    assert s.quick and s.seed == 3 and opts["only"] == ["tta", "gpu"]
    for bad in (["nonsense=1"], ["quick"], ["repeats=2"]):
        with pytest.raises(SystemExit):
            parse(bad)
    main(["quick=true", "only=tta,gpu", f"output={tmp_path / 'b.json'}"])
    written = json.loads((tmp_path / "b.json").read_text())
    assert {"ratios", "targets", "sections", "meta"} <= set(written)
    assert "tta.uncertain_30pct_share_of_full_gain" in written["ratios"]
    assert written["meta"]["optimizer"].startswith("torch.optim.AdamW(foreach=False")

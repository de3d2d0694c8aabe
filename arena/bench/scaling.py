"""``scaling``: time and peak memory of data preparation and inference at 1x, 4x and 16x rows.

Both pipelines of :mod:`arena.bench.scaling_worker` read a WSDM-layout parquet of ``n`` rows
(drawn from the real files' mix, or synthetic), with the backbone's tokenizer (saved and
reloaded) and a small random 2-layer encoder (hidden 64) of its vocabulary size: the pipeline,
not the network, is measured.

Files are written in row groups of ``chunk_rows`` rows (the unit a parquet reader decodes).

- ``streamed`` (arena's): ``prep`` reads chunks of ``chunk_rows`` rows and tokenizes them
  (token ids of every row written to a mapped file, lengths and labels kept: what training
  needs), ``inference`` is
  ``arena.predict``'s streamed scoring, outputs written chunk by chunk. ``chunk_rows`` is the 1x
  size, so 1x is one chunk and 16x sixteen (as 8192-row chunks over files of 8k to 128k rows).
- ``memory`` (the whole-table path, for reference): the table and its tokens at once.

Time: sizes interleaved in this process (1x, 4x, 16x, 1x, ...), streamed pipeline. Memory: one
fresh process per size and pipeline (the sizes side by side; in quick mode one round of the
streamed pipeline only). Memory is
the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` before each stage)
above the resident set at the stage's start, after imports, model build and a warm-up over 8 rows
(one-time allocations are not the rows' cost). Ratios are 16x over 1x of the smallest peak:
``inference_peak_memory_ratio_16x_vs_1x`` (issue 7: flat), ``prep_peak_memory_ratio_16x_vs_1x``
(flat: one chunk's text and ids at a time), their maximum
``peak_memory_ratio_16x_vs_1x``, and ``memory_pipeline_peak_memory_ratio_16x_vs_1x`` of the
whole-table path; ``inference_repeat`` is a second pass over the same file. Workers free
memory the way ``arena.predict`` does (:func:`arena.utils.heap.return_freed_memory`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.bench.common import Settings, interleave, stats
from arena.bench.inputs import ModelKit, build_kit, load_table, sample_rows
from arena.bench.scaling_worker import Pipeline

SIZES = (1, 4, 16)


def write_input(rows: pd.DataFrame, path: Path, row_group_rows: int | None = None) -> Path:
    """A WSDM-layout parquet (turns joined by newlines) of ``rows``, in row groups of
    ``row_group_rows`` (None: pyarrow's default, one group up to 1M rows)."""
    winner = np.where(rows["label"].to_numpy() == 1, "model_b", "model_a")
    frame = pd.DataFrame(
        {
            "id": rows["id"].astype(str),
            **{c: ["\n".join(t) for t in rows[c]] for c in ("prompt", "response_a", "response_b")},
            "winner": winner,
            "model_a": rows["model_a"],
            "model_b": rows["model_b"],
            "language": rows["language"],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, row_group_size=row_group_rows)
    return path


def memory_round(files: dict[int, Path], common: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """One fresh worker process per size, run side by side; their JSON results by size."""
    procs = {}
    for k, path in files.items():
        args = json.dumps({**common, "file": str(path)})
        command = [sys.executable, "-m", "arena.bench.scaling_worker", args]
        procs[k] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    out = {}
    for k, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"scaling worker failed ({proc.returncode}):\n{stderr[-2000:]}")
        out[k] = json.loads(stdout.strip().splitlines()[-1])
    return out


def timing(
    files: dict[int, Path], common: dict[str, Any], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Prep and inference seconds per size, sizes interleaved in this process."""
    pipe = Pipeline(common)
    pipe.measure(Path(common["warmup"]))
    seconds: dict[str, dict[str, list[float]]] = {}

    def size(k: int) -> Any:
        seconds[f"{k}x"] = {"prep": [], "inference": []}

        def go() -> float:
            run = pipe.measure(files[k])
            for stage, value in run.items():
                seconds[f"{k}x"][stage].append(value)
            return sum(run.values())

        return go

    interleave({f"{k}x": size(k) for k in files}, repeats)
    return seconds


MODES = ("streamed", "memory")


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Time the sizes interleaved, then measure their peak memory in fresh processes."""
    kit = kit or build_kit(settings)
    base = settings.pick(32, 256)
    table, source = load_table(settings)
    rows = sample_rows(table, base * SIZES[-1], settings.seed + 4)
    folder = Path(settings.work_dir) / "scaling"
    # row groups of one chunk, as a large file written in parts has: a row group is the unit a
    # parquet reader decodes (a 4096-row single group peaks 1.6x higher than 256-row groups)
    files = {
        k: write_input(rows.head(base * k), folder / f"rows_{base * k}.parquet", base)
        for k in SIZES
    }
    kit.tokenizer.save_pretrained(str(folder / "tokenizer"))
    common = {
        "warmup": str(write_input(rows.tail(8), folder / "warmup.parquet")),
        "tokenizer": str(folder / "tokenizer"),
        "template": vars(kit.template),
        "max_length": settings.max_length,
        "chunk_rows": base,
        "mode": "streamed",
        "seed": settings.seed,
        "threads": settings.threads,
        "malloc_mmap_threshold": 64 * 1024,  # as conf/predict.yaml
    }
    seconds = timing(files, common, settings.repeats)
    modes = settings.pick(MODES[:1], MODES)  # quick: the streamed pipeline only
    memory: dict[str, dict[int, list[dict[str, Any]]]] = {m: {k: [] for k in SIZES} for m in modes}
    for _ in range(settings.pick(1, settings.repeats)):
        for mode in modes:
            for k, result in memory_round(files, {**common, "mode": mode}).items():
                memory[mode][k].append(result)
    return _report(seconds, memory, base, source)


def _report(
    seconds: dict[str, dict[str, list[float]]],
    memory: dict[str, dict[int, list[dict[str, Any]]]],
    base: int,
    source: str,
) -> dict[str, Any]:
    stages = ("prep", "inference", "inference_repeat")

    def per_size(k: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows": base * k,
            "seconds": {stage: stats(v) for stage, v in seconds[f"{k}x"].items()},
        }
        for mode, by_size in memory.items():
            runs = by_size[k]
            out[mode] = {
                "peak_mb": {s: stats([r["peak_mb"][s] for r in runs]) for s in stages},
                "held_after_prep_mb": stats([r["held_after_prep_mb"] for r in runs]),
                "peak_reset": all(r["peak_reset"] for r in runs),
            }
        return out

    top = SIZES[-1]

    def mem(mode: str, *keys: str) -> float:
        def peak(k: int) -> float:
            return min(max(r["peak_mb"][key] for key in keys) for r in memory[mode][k])

        return peak(top) / max(peak(1), 0.1)

    def cost(stage: str) -> float:
        lo, hi = (min(seconds[f"{k}x"][stage]) for k in (1, top))
        return hi / lo / top

    prep, inference = mem("streamed", "prep"), mem("streamed", "inference")
    ratios = {
        "scaling.peak_memory_ratio_16x_vs_1x": max(prep, inference),
        "scaling.inference_peak_memory_ratio_16x_vs_1x": inference,
        "scaling.prep_peak_memory_ratio_16x_vs_1x": prep,
        "scaling.prep_per_row_cost_16x_vs_1x": cost("prep"),
        "scaling.inference_per_row_cost_16x_vs_1x": cost("inference"),
    }
    if "memory" in memory:
        whole = mem("memory", "prep", "inference")
        ratios["scaling.memory_pipeline_peak_memory_ratio_16x_vs_1x"] = whole
    sizes = {f"{k}x": per_size(k) for k in SIZES}
    return {
        "ratios": ratios,
        "raw": {"base_rows": base, "chunk_rows": base, "data": source, "sizes": sizes},
    }

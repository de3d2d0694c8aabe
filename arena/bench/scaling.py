"""``scaling``: time and peak memory of data preparation and inference at 1x, 4x and 16x rows.

Time: sizes interleaved in this process (1x, 4x, 16x, 1x, ...). Memory: one fresh process per
size (:mod:`arena.bench.scaling_worker`, the sizes side by side; one round in quick mode). Both
read a WSDM-layout parquet of ``n`` rows and run the steps of ``arena.predict``'s scoring:
``read_pairs`` -> ``cached_tokenize`` (no cache) -> formatted lengths (``prep``), then
length-sorted token-budget batches through the model (``inference``), with the backbone's tokenizer
(saved and reloaded) and a small random 2-layer encoder (hidden 64) of its vocabulary size: the
pipeline, not the network, is measured.

Memory is the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` before each
stage) above the resident set at the stage's start, after imports, model build and a warm-up
pass over 8 rows (one-time allocations are not the rows' cost). ``peak_memory_ratio_16x_vs_1x``
is that peak over prep + inference together; the batch loop alone
(``loop_peak_memory_ratio_16x_vs_1x``) is what streaming keeps flat. The current pipeline holds
the whole table and its tokens, so the overall peak grows with the rows; this section reports it
as measured. The loop's first pass also grows with the number of distinct batch shapes (oneDNN
keeps a primitive per shape: ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`` removes most of it); a second
pass over the same rows (``loop_repeat``) shows the per-batch memory alone.
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


def write_input(rows: pd.DataFrame, path: Path) -> Path:
    """A WSDM-layout parquet (turns joined by newlines) of ``rows``."""
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
    frame.to_parquet(path, index=False)
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


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Time the sizes interleaved, then measure their peak memory in fresh processes."""
    kit = kit or build_kit(settings)
    base = settings.pick(32, 256)
    table, source = load_table(settings)
    rows = sample_rows(table, base * SIZES[-1], settings.seed + 4)
    folder = Path(settings.work_dir) / "scaling"
    files = {
        k: write_input(rows.head(base * k), folder / f"rows_{base * k}.parquet") for k in SIZES
    }
    kit.tokenizer.save_pretrained(str(folder / "tokenizer"))
    common = {
        "warmup": str(write_input(rows.tail(8), folder / "warmup.parquet")),
        "tokenizer": str(folder / "tokenizer"),
        "template": vars(kit.template),
        "max_length": settings.max_length,
        "seed": settings.seed,
        "threads": settings.threads,
    }
    seconds = timing(files, common, settings.repeats)
    memory: dict[int, list[dict[str, Any]]] = {k: [] for k in SIZES}
    for _ in range(settings.pick(1, settings.repeats)):
        for k, result in memory_round(files, common).items():
            memory[k].append(result)
    return _report(seconds, memory, base, source)


def _report(
    seconds: dict[str, dict[str, list[float]]],
    memory: dict[int, list[dict[str, Any]]],
    base: int,
    source: str,
) -> dict[str, Any]:
    def per_size(k: int) -> dict[str, Any]:
        runs = memory[k]
        return {
            "rows": base * k,
            "seconds": {stage: stats(v) for stage, v in seconds[f"{k}x"].items()},
            "peak_mb": {
                s: stats([r["peak_mb"][s] for r in runs])
                for s in ("prep", "loop", "total", "loop_repeat")
            },
            "held_after_prep_mb": stats([r["held_after_prep_mb"] for r in runs]),
            "peak_reset": all(r["peak_reset"] for r in runs),
        }

    top = SIZES[-1]

    def mem(key: str) -> float:
        lo, hi = (min(r["peak_mb"][key] for r in memory[k]) for k in (1, top))
        return hi / max(lo, 0.1)

    def cost(stage: str) -> float:
        lo, hi = (min(seconds[f"{k}x"][stage]) for k in (1, top))
        return hi / lo / top

    ratios = {
        "scaling.peak_memory_ratio_16x_vs_1x": mem("total"),
        "scaling.loop_peak_memory_ratio_16x_vs_1x": mem("loop"),
        "scaling.prep_per_row_cost_16x_vs_1x": cost("prep"),
        "scaling.inference_per_row_cost_16x_vs_1x": cost("inference"),
    }
    sizes = {f"{k}x": per_size(k) for k in SIZES}
    return {"ratios": ratios, "raw": {"base_rows": base, "data": source, "sizes": sizes}}

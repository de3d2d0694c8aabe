"""Generate unlabeled pairs: every prompt answered by two instruct LLMs (A and B).

Usage:
    python -m arena.generate prompts_file=prompts.jsonl \
        generators=[/models/qwen2_5_7b_instruct,/models/gemma2_9b_it] \
        output_file=data/unlabeled.parquet max_new_tokens=512 device=cuda dtype=bfloat16
    python -m arena.generate prompts_file=train.parquet generators=[<dir>,<dir>] \
        output_file=data/unlabeled.parquet do_sample=false limit=1000   # greedy, 1000 prompts

``prompts_file`` is any pair file (its prompts are used) or a parquet/csv/jsonl/json file with a
``prompt`` column. Writes ``output_file`` (``id, prompt, response_a, response_b, model_a, model_b,
language, source``; no labels), which ``python -m arena.pseudo_label`` reads, and beside it
``<stem>.summary.json`` (rows, generators, decoding, seconds, empty replies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.distributed import resolve_device
from arena.inference.generation import Sampling, load_generator, read_prompts, respond
from arena.utils.config import register_resolvers
from arena.utils.io import write_json, write_parquet

register_resolvers()
log = logging.getLogger(__name__)


def generate_pairs(
    prompts: pd.DataFrame,
    generators: Sequence[str],
    sampling: Sampling,
    *,
    source: str = "generated",
    id_prefix: str = "gen",
    **load_kw: Any,
) -> pd.DataFrame:
    """An unlabeled pair table: every prompt answered by ``generators[0]`` (A) and ``[1]`` (B).

    Generators are loaded one at a time (the first is freed before the second loads); B samples
    with ``sampling.seed + 1`` so that a generator paired with itself gives two samples.

    Args:
        prompts: from :func:`read_prompts`.
        generators: two model dirs or hub ids.
        sampling: decoding.
        source: the ``source`` of every row; id_prefix: ids are ``<id_prefix>-<prompt id>``.
        **load_kw: keywords of :func:`load_generator` (backend, device, dtype, ...).

    Returns:
        Columns ``id, prompt, response_a, response_b, model_a, model_b, language, source``;
        text cells are lists of turns.
    """
    if len(generators) != 2:
        raise ValueError(
            f"generators must name exactly two models (A and B), got {list(generators)}"
        )
    turns = prompts["prompt"].tolist()
    responses, names = [], []
    for k, source_k in enumerate(generators):
        generator = load_generator(str(source_k), **load_kw)
        seeded = replace(sampling, seed=sampling.seed + k)
        responses.append(respond(generator, turns, seeded))
        names.append(generator.name)
        del generator  # free its memory before the next one loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    n = len(prompts)
    return pd.DataFrame(
        {
            "id": [f"{id_prefix}-{key}" for key in prompts["id"]],
            "prompt": turns,
            "response_a": responses[0],
            "response_b": responses[1],
            "model_a": [names[0]] * n,
            "model_b": [names[1]] * n,
            "language": prompts["language"].tolist(),
            "source": [source] * n,
        },
        dtype=object,
    )


def generate_run(cfg: DictConfig) -> dict[str, Any]:
    """Read the prompts, generate both responses, write the pair file and its summary."""
    out = Path(cfg.output_file)
    if out.suffix != ".parquet":
        raise ValueError(f"output_file={out} must end in .parquet")
    generators = cfg.generators
    if OmegaConf.is_config(generators):
        generators = OmegaConf.to_container(generators, resolve=True)
    generators = [str(g) for g in generators] if isinstance(generators, list) else [str(generators)]
    sampling = Sampling(
        **{k: cfg[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p", "seed")},
        batch_size=cfg.batch_size,
        max_input_tokens=cfg.max_input_tokens,
    )
    prompts = read_prompts(cfg.prompts_file, dedupe=cfg.dedupe, limit=cfg.limit)
    began = time.perf_counter()
    pairs = generate_pairs(
        prompts,
        generators,
        sampling,
        source=cfg.source,
        id_prefix=cfg.id_prefix,
        backend=cfg.backend,
        device=str(resolve_device(cfg.device)),
        dtype=cfg.dtype,
        local_files_only=cfg.local_files_only,
        trust_remote_code=cfg.trust_remote_code,
    )
    seconds = time.perf_counter() - began
    empty = {
        c: int(sum(not any(t.strip() for t in turns) for turns in pairs[c]))
        for c in ("response_a", "response_b")
    }
    summary = {
        "rows": len(pairs),
        "prompts_file": str(cfg.prompts_file),
        "generators": generators,
        "sampling": asdict(sampling),
        "backend": cfg.backend,
        "source": cfg.source,
        "seconds": seconds,
        "empty_responses": empty,
        "output_file": str(out),
    }
    write_parquet(out, pairs)
    write_json(out.with_suffix(".summary.json"), summary)
    if any(empty.values()):
        log.warning("empty replies (the reader's data.empty policy handles them): %s", empty)
    log.info("wrote %d pairs in %.1f s to %s", len(pairs), seconds, out)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return generate_run(cfg)


if __name__ == "__main__":
    main()

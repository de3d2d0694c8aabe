"""Generate unlabeled pairs: every prompt answered by two instruct LLMs (A and B).

Usage:
    python -m arena.generate prompts_file=prompts.jsonl \
        generators=[/models/qwen2_5_7b_instruct,/models/gemma2_9b_it] \
        output_file=data/unlabeled.parquet max_new_tokens=512 device=cuda dtype=bfloat16
    python -m arena.generate prompts_file=train.parquet generators=[<dir>,<dir>] \
        output_file=data/unlabeled.parquet do_sample=false limit=1000   # greedy, 1000 prompts
    python -m arena.generate prompts_file=train.parquet prompt_generator=<instruct model dir> \
        n_prompts=5000 generators=[<dir>,<dir>] output_file=data/synthesized.parquet

``prompts_file`` is any pair file (its prompts are used) or a parquet/csv/jsonl/json file with a
``prompt`` column. Writes ``output_file`` (``id, prompt, response_a, response_b, model_a, model_b,
language, source``; no labels), which ``python -m arena.pseudo_label`` reads, and beside it
``<stem>.summary.json`` (rows, generators, decoding, seconds, empty replies). Pairs with an empty
reply are dropped and counted (``drop_empty=false`` keeps them for the reader's ``empty`` policy).

With ``prompt_generator`` set, the prompts answered are new ones: that model writes
``n_prompts`` prompts in the style of few-shot seed prompts drawn from ``prompts_file``
(:mod:`arena.inference.synthesis`; empty, repeated and copied ones dropped and counted in the
summary's ``synthesis``); rows then also carry ``seed_ids`` and ``prompt_generator``, and their
``source`` defaults to ``synthesized``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.distributed import resolve_device
from arena.inference.generation import Sampling, load_generator, read_prompts, respond
from arena.inference.synthesis import Synthesis, synthesize_prompts
from arena.utils.config import register_resolvers
from arena.utils.io import write_json, write_parquet

register_resolvers()
log = logging.getLogger(__name__)

RESPONSES = ("response_a", "response_b")


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
    pairs = pd.DataFrame(
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
    for column in ("seed_ids", "prompt_generator"):  # where synthesized prompts came from
        if column in prompts.columns:
            pairs[column] = prompts[column].tolist()
    return pairs


def empty_replies(pairs: pd.DataFrame) -> pd.DataFrame:
    """(n, 2) bool: whether each pair's ``response_a`` / ``response_b`` has a blank turn."""
    return pd.DataFrame(
        {c: [not all(t.strip() for t in turns) for turns in pairs[c]] for c in RESPONSES}
    )


def _load_kw(cfg: DictConfig) -> dict[str, Any]:
    """Keywords of :func:`load_generator` from the config."""
    return {
        "backend": cfg.backend,
        "device": str(resolve_device(cfg.device)),
        "dtype": cfg.dtype,
        "local_files_only": cfg.local_files_only,
        "trust_remote_code": cfg.trust_remote_code,
    }


def _prompts(cfg: DictConfig, sampling: Sampling) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The prompts to answer: those of ``prompts_file``, or new ones from ``prompt_generator``
    seeded by them (with the synthesis counts)."""
    prompts = read_prompts(cfg.prompts_file, dedupe=cfg.dedupe, limit=cfg.limit)
    if cfg.prompt_generator is None:
        return prompts, None
    options = {f.name: cfg[f.name] for f in fields(Synthesis) if cfg[f.name] is not None}
    spec = Synthesis(**options)  # a null prompt_template: the module's default
    generator = load_generator(str(cfg.prompt_generator), **_load_kw(cfg))
    synthesized, counts = synthesize_prompts(generator, prompts, spec, sampling)
    del generator  # free its memory before the answering generators load
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if counts["kept"] < counts["requested"]:
        log.warning("prompt synthesis kept %d of %d prompts: %s", counts["kept"],
                    counts["requested"], counts)  # fmt: skip
    summary = {"prompt_generator": str(cfg.prompt_generator), "seed_prompts": len(prompts)}
    return synthesized, summary | asdict(spec) | counts


def generate_run(cfg: DictConfig) -> dict[str, Any]:
    """Read (or synthesize) the prompts, generate both responses, drop empty pairs, write the
    pair file and its summary."""
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
    began = time.perf_counter()
    prompts, synthesis = _prompts(cfg, sampling)
    source = cfg.source or ("generated" if synthesis is None else "synthesized")
    pairs = generate_pairs(
        prompts, generators, sampling, source=source, id_prefix=cfg.id_prefix, **_load_kw(cfg)
    )
    seconds = time.perf_counter() - began
    empty = empty_replies(pairs)
    dropped = empty.any(axis=1).to_numpy() if cfg.drop_empty else np.zeros(len(pairs), bool)
    pairs = pairs.loc[~dropped].reset_index(drop=True)
    summary = {
        "rows": len(pairs),
        "prompts_file": str(cfg.prompts_file),
        "generators": generators,
        "sampling": asdict(sampling),
        "backend": cfg.backend,
        "source": source,
        "seconds": seconds,
        "empty_responses": {c: int(empty[c].sum()) for c in RESPONSES},
        "rows_dropped_empty": int(dropped.sum()),
        "synthesis": synthesis,
        "output_file": str(out),
    }
    write_parquet(out, pairs)
    write_json(out.with_suffix(".summary.json"), summary)
    if empty.to_numpy().any():
        what = "dropped" if cfg.drop_empty else "kept (the reader's data.empty policy decides)"
        log.warning("pairs with empty replies %s: %s", what, summary["empty_responses"])
    log.info("wrote %d pairs in %.1f s to %s", len(pairs), seconds, out)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return generate_run(cfg)


if __name__ == "__main__":
    main()

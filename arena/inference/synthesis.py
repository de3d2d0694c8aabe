"""New user prompts in the style of seed prompts, written by an instruct LLM from few-shot examples.

    seeds = read_prompts("train.parquet")                        # id, prompt (turns), language
    gen = load_generator("/models/qwen2_5_7b_instruct", device="cuda", dtype="bfloat16")
    prompts, counts = synthesize_prompts(gen, seeds, Synthesis(n_prompts=1000), Sampling(seed=0))

Candidate ``k`` shows the generator ``n_shots`` seed prompts (drawn without replacement by a
generator seeded with ``sampling.seed``; a seed's first user turn, clipped to ``max_seed_chars``)
inside ``prompt_template`` and takes its reply as a new single-turn prompt. Empty replies,
repeats of an earlier candidate and copies of a seed (compared after collapsing whitespace and
case) are dropped and counted, so at most ``n_prompts`` prompts come back. The same seeds,
sampling and generator give the same prompts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from arena.data.folds import normalize_prompt
from arena.data.schema import UNKNOWN
from arena.inference.generation import Generator, Sampling, respond

DEFAULT_TEMPLATE = (
    "Here are some requests that users sent to an AI assistant:\n\n{examples}\n\n"
    "Write one new request that a user could send, in the same style and language as these but "
    "about something else. Reply with the request only."
)
EXAMPLES = "{examples}"


@dataclass(frozen=True)
class Synthesis:
    """How new prompts are asked for.

    Attributes:
        n_prompts: candidates to generate (each one generator reply).
        n_shots: seed prompts shown per candidate (fewer when there are fewer seeds).
        prompt_template: the instruction; ``{examples}`` becomes the numbered seed prompts.
        max_seed_chars: a longer seed prompt is cut to its first characters.
        prompt_max_new_tokens: most tokens of a new prompt.
    """

    n_prompts: int = 100
    n_shots: int = 3
    prompt_template: str = DEFAULT_TEMPLATE
    max_seed_chars: int = 1000
    prompt_max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if min(self.n_prompts, self.n_shots, self.max_seed_chars, self.prompt_max_new_tokens) < 1:
            raise ValueError(
                "n_prompts, n_shots, max_seed_chars and prompt_max_new_tokens must be >= 1; "
                f"got {self.n_prompts}, {self.n_shots}, {self.max_seed_chars}, "
                f"{self.prompt_max_new_tokens}"
            )
        if EXAMPLES not in self.prompt_template:
            raise ValueError(
                f"prompt_template must contain {EXAMPLES} (where the seed prompts go); "
                f"got {self.prompt_template!r}"
            )


def few_shot_requests(
    seeds: pd.DataFrame, spec: Synthesis, seed: int
) -> tuple[list[str], list[list[str]]]:
    """The instruction of every candidate and the ids of the seeds it shows.

    Args:
        seeds: from :func:`arena.inference.generation.read_prompts` (``id``, ``prompt``).
        spec: template, shots, clipping.
        seed: seeds the draw of the examples.

    Returns:
        ``n_prompts`` instructions and, for each, its ``n_shots`` seed ids in the order shown.

    Raises:
        ValueError: no seed prompts.
    """
    if not len(seeds):
        raise ValueError("prompt synthesis needs seed prompts; prompts_file has none")
    rng = np.random.default_rng(seed)
    firsts = [str(turns[0])[: spec.max_seed_chars] for turns in seeds["prompt"]]
    ids = [str(i) for i in seeds["id"]]
    shots = min(spec.n_shots, len(seeds))
    instructions, shown = [], []
    for _ in range(spec.n_prompts):
        picked = rng.choice(len(seeds), size=shots, replace=False)
        examples = "\n\n".join(f"Request {j + 1}:\n{firsts[p]}" for j, p in enumerate(picked))
        # str.replace, not format: seed prompts and templates may hold braces of their own
        instructions.append(spec.prompt_template.replace(EXAMPLES, examples))
        shown.append([ids[p] for p in picked])
    return instructions, shown


def _language(seed_ids: list[str], languages: dict[str, str]) -> str:
    """The seeds' language when they agree, else unknown."""
    found = {languages[i] for i in seed_ids}
    return found.pop() if len(found) == 1 else UNKNOWN


def synthesize_prompts(
    generator: Generator,
    seeds: pd.DataFrame,
    spec: Synthesis,
    sampling: Sampling,
    id_prefix: str = "syn",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """New prompts from ``generator``, ready for :func:`arena.generate.generate_pairs`.

    Args:
        generator: the prompt generator, from :func:`arena.inference.generation.load_generator`.
        seeds: seed prompts (``id``, ``prompt``, ``language``).
        spec: what to ask for; ``spec.prompt_max_new_tokens`` replaces ``sampling.max_new_tokens``.
        sampling: decoding and the seed of the example draw.
        id_prefix: candidate ``k`` is ``<id_prefix>-<k>`` (gaps where candidates were dropped).

    Returns:
        The kept prompts (``id``, ``prompt`` as one user turn, ``language``, ``seed_ids``,
        ``prompt_generator``) and the counts ``requested``, ``empty``, ``duplicate``,
        ``seed_copy``, ``kept``.
    """
    instructions, shown = few_shot_requests(seeds, spec, sampling.seed)
    asked = replace(sampling, max_new_tokens=spec.prompt_max_new_tokens)
    replies = [r[0].strip() for r in respond(generator, [[t] for t in instructions], asked)]
    known = {normalize_prompt(turns) for turns in seeds["prompt"]}
    known |= {normalize_prompt(str(turns[0])) for turns in seeds["prompt"]}
    seen: set[str] = set()
    why: Counter[str] = Counter()
    kept = []
    for k, text in enumerate(replies):
        key = normalize_prompt(text)
        reason = "empty" if not key else "seed_copy" if key in known else None
        reason = reason or ("duplicate" if key in seen else None)
        seen.add(key)
        if reason is not None:
            why[reason] += 1
            continue
        kept.append(k)
    languages = dict(zip(map(str, seeds["id"]), seeds["language"], strict=True))
    prompts = pd.DataFrame(
        {
            "id": [f"{id_prefix}-{k}" for k in kept],
            "prompt": [[replies[k]] for k in kept],
            "language": [_language(shown[k], languages) for k in kept],
            "seed_ids": [shown[k] for k in kept],
            "prompt_generator": [generator.name] * len(kept),
        },
        dtype=object,
    )
    counts = {"requested": spec.n_prompts, "kept": len(kept)}
    counts |= {k: why[k] for k in ("empty", "duplicate", "seed_copy")}
    return prompts, counts

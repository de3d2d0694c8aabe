"""Prompt synthesis (:mod:`arena.inference.synthesis`): what the prompt generator is shown, which
candidates are dropped and counted, ids and seed ids, and the same prompts for the same seed from
a tiny random decoder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arena.inference.generation import HFGenerator, Sampling
from arena.inference.synthesis import Synthesis, few_shot_requests, synthesize_prompts

SEEDS = pd.DataFrame(
    {
        "id": ["s0", "s1", "s2", "s3"],
        "prompt": [["why is the sky blue"], ["hola", "y luego"], ["name a {brace}"], ["bonjour"]],
        "language": ["en", "es", "en", "fr"],
    },
    dtype=object,
)


class ByteTokenizer:
    """Enough of a tokenizer for :func:`arena.inference.generation.render`: UTF-8 bytes."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode())}


class Scripted:
    """A generator that answers with ``replies`` in order and keeps what it was shown."""

    name = "scripted"
    tokenizer = ByteTokenizer()

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.shown = replies, []

    def generate(self, inputs: list[list[int]], sampling: Sampling) -> list[str]:
        self.shown += [bytes(ids).decode() for ids in inputs]
        return self.replies[: len(inputs)]


def test_instructions_show_n_shots_seeds_and_record_them() -> None:
    spec = Synthesis(n_prompts=5, n_shots=2, max_seed_chars=6)
    instructions, shown = few_shot_requests(SEEDS, spec, seed=0)
    assert len(instructions) == 5 and all(len(ids) == 2 and len(set(ids)) == 2 for ids in shown)
    first = dict(zip(SEEDS["id"], [p[0] for p in SEEDS["prompt"]], strict=True))
    for text, ids in zip(instructions, shown, strict=True):
        assert f"Request 1:\n{first[ids[0]][:6]}\n\nRequest 2:\n{first[ids[1]][:6]}" in text
        assert "{examples}" not in text
    assert few_shot_requests(SEEDS, spec, seed=0) == (instructions, shown)
    assert few_shot_requests(SEEDS, spec, seed=1)[1] != shown
    wide = few_shot_requests(SEEDS, Synthesis(n_prompts=1, n_shots=9), seed=0)[1]
    assert sorted(wide[0]) == ["s0", "s1", "s2", "s3"]  # capped at the seeds there are


def test_empty_repeated_and_copied_prompts_are_dropped_and_counted() -> None:
    replies = ["  ", "What is X?", "what  is x?", "Why is the sky BLUE", "a new one", "\n"]
    generator = Scripted(replies)
    prompts, counts = synthesize_prompts(
        generator, SEEDS, Synthesis(n_prompts=6, n_shots=3), Sampling(seed=0)
    )
    assert counts == {"requested": 6, "kept": 2, "empty": 2, "duplicate": 1, "seed_copy": 1}
    assert prompts["id"].tolist() == ["syn-1", "syn-4"]  # candidate numbers, gaps kept
    assert prompts["prompt"].tolist() == [["What is X?"], ["a new one"]]
    assert set(prompts["prompt_generator"]) == {"scripted"}
    _, shown = few_shot_requests(SEEDS, Synthesis(n_prompts=6, n_shots=3), seed=0)
    assert prompts["seed_ids"].tolist() == [shown[1], shown[4]]
    assert all("Reply with the request only." in text for text in generator.shown)


def test_bad_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"prompt_template must contain \{examples\}"):
        Synthesis(prompt_template="write a prompt")
    with pytest.raises(ValueError, match="n_prompts, n_shots"):
        Synthesis(n_prompts=0)
    with pytest.raises(ValueError, match="needs seed prompts"):
        few_shot_requests(SEEDS.iloc[:0], Synthesis(), seed=0)


def test_a_tiny_decoder_gives_the_same_prompts_for_the_same_seed(decoders: dict[str, Path]) -> None:
    generator = HFGenerator(str(decoders["chat"]))
    spec = Synthesis(n_prompts=4, n_shots=2, prompt_max_new_tokens=6)
    first, counts = synthesize_prompts(generator, SEEDS, spec, Sampling(seed=3, batch_size=2))
    again, _ = synthesize_prompts(generator, SEEDS, spec, Sampling(seed=3, batch_size=2))
    pd.testing.assert_frame_equal(first, again)
    assert counts["kept"] + counts["empty"] + counts["duplicate"] + counts["seed_copy"] == 4
    assert len(first) == counts["kept"] > 0
    assert all(p[0].strip() for p in first["prompt"])  # nothing empty comes back
    assert set(first["prompt_generator"]) == {decoders["chat"].name}
    other, _ = synthesize_prompts(generator, SEEDS, spec, Sampling(seed=4, batch_size=2))
    assert other["prompt"].tolist() != first["prompt"].tolist()

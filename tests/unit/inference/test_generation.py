"""Response generation (:mod:`arena.inference.generation`) with tiny random decoders: chat
templates, clear errors for bad choices, left-padded batches decode like single rows, prompt
files."""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.generate import generate_pairs
from arena.inference.generation import (
    HFGenerator,
    Sampling,
    load_generator,
    read_prompts,
    render,
    respond,
)
from tests.helpers import write_wsdm


def test_render_uses_the_chat_template_when_there_is_one(decoders: dict[str, Path]) -> None:
    chat = HFGenerator(str(decoders["chat"]))
    base = HFGenerator(str(decoders["base"]))
    messages = [{"role": "user", "content": "hi"}]
    ids = render(chat.tokenizer, messages, 100)
    assert chat.tokenizer.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = render(base.tokenizer, messages, 100)
    assert ids[0] == base.tokenizer.bos_token_id  # plain text framed by the tokenizer's BOS
    assert base.tokenizer.decode(ids[1:]) == "User: hi\n\nAssistant:"
    assert len(render(base.tokenizer, messages, 3)) == 3  # the tail is kept


def test_generator_choices_fail_clearly(decoders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="vLLM is not installed"):
        load_generator(str(decoders["chat"]), backend="vllm")
    with pytest.raises(FileNotFoundError, match="local_files_only=true"):
        load_generator(str(tmp_path / "no_such_model"))
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    with pytest.raises(ValueError, match="exactly two models"):
        generate_pairs(read_prompts(tmp_path / "p.jsonl"), [str(decoders["chat"])], Sampling())
    with pytest.raises(ValueError, match="greedy decoding: do_sample=false"):
        Sampling(temperature=0.0)


def test_left_padded_batches_decode_like_single_rows(decoders: dict[str, Path]) -> None:
    generator = HFGenerator(str(decoders["chat"]))
    prompts = [["short"], ["a considerably longer prompt than the first one"], ["mid length"]]
    greedy = Sampling(max_new_tokens=5, do_sample=False, batch_size=3)
    batched = respond(generator, prompts, greedy)
    single = respond(generator, prompts, Sampling(max_new_tokens=5, do_sample=False, batch_size=1))
    assert batched == single
    sampled = Sampling(max_new_tokens=5, seed=3, batch_size=2)
    assert respond(generator, prompts, sampled) == respond(generator, prompts, sampled)


def test_read_prompts_accepts_pair_files_and_names_bad_rows(tmp_path: Path) -> None:
    pairs = write_wsdm(make_synthetic(6, seed=1, n_turns_max=1), tmp_path / "pairs.parquet")
    prompts = read_prompts(pairs, limit=4)
    assert len(prompts) == 4 and list(prompts.columns) == ["id", "prompt", "language"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": "   "}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, row 1, column 'prompt'"):
        read_prompts(bad)
    (tmp_path / "none.csv").write_text("question\nwhat\n")
    with pytest.raises(DataError, match=r"missing required column\(s\) \['prompt'\]"):
        read_prompts(tmp_path / "none.csv")

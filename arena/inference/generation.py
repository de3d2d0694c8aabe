"""Unlabeled pairs from instruct LLMs: each prompt answered by generator A and by generator B.

    prompts = read_prompts("train.parquet")                      # id, prompt (turns), language
    sampling = Sampling(max_new_tokens=256, temperature=0.7, seed=0)
    gen = load_generator("Qwen/Qwen2.5-7B-Instruct", device="cuda", dtype="bfloat16")
    replies = respond(gen, prompts["prompt"].tolist(), sampling)  # one list of turns per prompt

Any Hugging Face causal LM with its tokenizer works. A conversation is rendered with the
tokenizer's chat template when it has one (``add_generation_prompt``), else as plain
``User: ... / Assistant:`` text with the tokenizer's own special tokens. Multi-turn prompts are
answered turn by turn: turn ``k`` is generated after the generator's own replies to turns
``0..k-1``. Batches are length-sorted and left-padded (decoder-only generation continues at the
right edge); the longest inputs keep their last ``max_input_tokens`` tokens. Sampling is seeded
per generator, or greedy with ``do_sample=False``. With ``backend="vllm"`` (or ``auto`` on CUDA
when vLLM is installed) the same token ids go to ``vllm.LLM.generate`` instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from arena.data import validate as v
from arena.data.readers import read_pairs
from arena.data.schema import UNKNOWN, DataError
from arena.models.quant import torch_dtype

Backend = Literal["auto", "hf", "vllm"]
Message = dict[str, str]
_PAIR_COLUMNS = ({"response_a", "response_b"}, {"chosen", "rejected"})
_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


@dataclass(frozen=True)
class Sampling:
    """How replies are decoded.

    Attributes:
        max_new_tokens: most generated tokens per reply.
        do_sample: sample (seeded) or decode greedily.
        temperature, top_p: sampling knobs (unused when greedy).
        seed: seeds the sampler of each generator (see :func:`respond`).
        batch_size: conversations per ``generate`` call.
        max_input_tokens: longer rendered conversations keep their last tokens.
    """

    max_new_tokens: int = 256
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 8
    max_input_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.max_input_tokens < 1:
            raise ValueError(
                "max_new_tokens, batch_size and max_input_tokens must be >= 1; got "
                f"{self.max_new_tokens}, {self.batch_size}, {self.max_input_tokens}"
            )
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(
                f"sampling needs temperature > 0 and top_p in (0, 1]; got {self.temperature}, "
                f"{self.top_p} (greedy decoding: do_sample=false)"
            )


class Generator(Protocol):
    """Something that continues rendered conversations (token ids) with one reply each."""

    name: str
    tokenizer: Any  # a transformers tokenizer

    def generate(self, inputs: list[list[int]], sampling: Sampling) -> list[str]:
        """One decoded reply (special tokens skipped, stripped) per input, in order."""


def render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], limit: int) -> list[int]:
    """Token ids of a conversation ending in a user turn, ready for the assistant's reply.

    Args:
        tokenizer: the generator's tokenizer (its chat template when it has one).
        messages: alternating ``{"role": "user"|"assistant", "content": ...}`` turns.
        limit: keep at most the last ``limit`` tokens.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        roles = {"user": "User", "assistant": "Assistant"}
        text = "".join(f"{roles[m['role']]}: {m['content']}\n\n" for m in messages)
        ids = tokenizer(text + "Assistant:", add_special_tokens=True)["input_ids"]
    return list(ids[-limit:])


def _pad_left(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, L) input ids and attention mask, left-padded to the longest input."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ids in enumerate(batch):
        input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[i, width - len(ids) :] = 1
    return input_ids, mask


class HFGenerator:
    """A transformers causal LM and its tokenizer (``source``: a local dir or a hub id)."""

    def __init__(
        self,
        source: str,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        local_files_only: bool = True,
        trust_remote_code: bool = False,
    ):
        kw: dict[str, Any] = {
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
        }
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kw)
            kw["dtype"] = torch_dtype(dtype)
            model: Any = AutoModelForCausalLM.from_pretrained(source, **kw)
        except OSError as err:
            hint = " (local_files_only=true: set it false to download)" if local_files_only else ""
            raise FileNotFoundError(f"generator {source!r}: no model found{hint}: {err}") from err
        self.name, self.device = generator_name(source), torch.device(device)
        self.model = model.to(self.device).eval()
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(self.tokenizer.eos_token_id if pad is None else pad)

    def generate(self, inputs: list[list[int]], sampling: Sampling) -> list[str]:
        """Replies in ``inputs`` order, from length-sorted left-padded batches."""
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out: list[str] = [""] * len(inputs)
        knobs: dict[str, Any] = {"do_sample": sampling.do_sample}
        if sampling.do_sample:
            knobs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        for start in range(0, len(order), sampling.batch_size):
            rows = order[start : start + sampling.batch_size]
            input_ids, mask = _pad_left([inputs[i] for i in rows], self.pad_id)
            with torch.inference_mode():
                tokens = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=self.pad_id,
                    **knobs,
                )
            new = tokens[:, input_ids.shape[1] :].cpu()  # (b, <= max_new_tokens)
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, text in zip(rows, texts, strict=True):
                out[i] = text.strip()
        return out


class VLLMGenerator:
    """The same contract on vLLM (token-id prompts, so rendering matches :class:`HFGenerator`)."""

    def __init__(self, source: str, *, dtype: str = "bfloat16", trust_remote_code: bool = False):
        from vllm import LLM

        self.llm = LLM(model=source, dtype=dtype, trust_remote_code=trust_remote_code)
        self.name, self.tokenizer = generator_name(source), self.llm.get_tokenizer()

    def generate(self, inputs: list[list[int]], sampling: Sampling) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=1,
            temperature=sampling.temperature if sampling.do_sample else 0.0,
            top_p=sampling.top_p if sampling.do_sample else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            skip_special_tokens=True,
        )
        prompts = [{"prompt_token_ids": ids} for ids in inputs]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]


def generator_name(source: str) -> str:
    """``model_a``/``model_b`` name of a generator: a local dir's name, else the hub id."""
    path = Path(source)
    return path.name if path.is_dir() else source


def load_generator(
    source: str,
    *,
    backend: Backend = "auto",
    device: str = "cpu",
    dtype: str = "float32",
    local_files_only: bool = True,
    trust_remote_code: bool = False,
) -> Generator:
    """A :class:`VLLMGenerator` (``vllm``, or ``auto`` on CUDA with vLLM installed) or an
    :class:`HFGenerator`."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend must be auto, hf or vllm, got {backend!r}")
    if backend == "vllm" and not has_vllm:
        raise ImportError("backend=vllm but vLLM is not installed: pip install vllm, or backend=hf")
    if backend == "vllm" or (backend == "auto" and has_vllm and device.startswith("cuda")):
        if local_files_only and not Path(source).is_dir():
            raise FileNotFoundError(
                f"generator {source!r} is not a local dir and vLLM would download it; "
                "set local_files_only=false to allow that"
            )
        return VLLMGenerator(source, dtype=dtype, trust_remote_code=trust_remote_code)
    return HFGenerator(
        source,
        device=device,
        dtype=dtype,
        local_files_only=local_files_only,
        trust_remote_code=trust_remote_code,
    )


def respond(
    generator: Generator, prompts: Sequence[list[str]], sampling: Sampling
) -> list[list[str]]:
    """The generator's reply to every user turn of every prompt.

    Args:
        generator: from :func:`load_generator`.
        prompts: one list of user turns per pair.
        sampling: decoding; ``torch.manual_seed(sampling.seed)`` runs first.

    Returns:
        One list of replies per prompt, as many as it has turns; turn ``k`` saw the replies to
        turns ``0..k-1``.
    """
    torch.manual_seed(sampling.seed)
    replies: list[list[str]] = [[] for _ in prompts]
    for turn in range(max((len(p) for p in prompts), default=0)):
        rows = [i for i, p in enumerate(prompts) if len(p) > turn]
        inputs = [
            render(
                generator.tokenizer,
                _messages(prompts[i], replies[i], turn),
                sampling.max_input_tokens,
            )
            for i in rows
        ]
        for i, text in zip(rows, generator.generate(inputs, sampling), strict=True):
            replies[i].append(text)
    return replies


def _messages(user: list[str], assistant: list[str], turn: int) -> list[Message]:
    """User turns ``0..turn`` interleaved with the assistant's replies ``0..turn-1``."""
    out: list[Message] = []
    for k in range(turn + 1):
        out.append({"role": "user", "content": user[k]})
        if k < turn:
            out.append({"role": "assistant", "content": assistant[k]})
    return out


def _load_prompt_frame(path: Path) -> pd.DataFrame:
    """A prompts file as a DataFrame of object columns."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path).astype(object)
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=object, keep_default_na=False)
        return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False).astype(object)
    except (ValueError, OSError) as err:
        raise DataError(str(path), None, None, f"cannot parse the file: {err}") from None


def read_prompts(path: str | Path, dedupe: bool = True, limit: int | None = None) -> pd.DataFrame:
    """Prompts to answer: ``id``, ``prompt`` (list of user turns) and ``language``.

    Args:
        path: any pair file (its prompts are used; responses and labels ignored) or a
            ``.parquet``/``.csv``/``.jsonl``/``.json`` file with a ``prompt`` column (a string or a
            list of turns; optional ``id`` and ``language``).
        dedupe: keep only the first row of identical prompts.
        limit: keep at most this many prompts (after dedupe).

    Raises:
        DataError: unsupported file, no ``prompt`` column, or a blank or non-text prompt (naming
            the file, row and column).
    """
    path, file = Path(path), str(path)
    if path.suffix not in _SUFFIXES:
        raise DataError(file, None, None, f"unsupported file type; expected {_SUFFIXES}")
    frame = _load_prompt_frame(path)
    if any(cols <= set(frame.columns) for cols in _PAIR_COLUMNS):
        table = read_pairs(path, labeled=False)[0]
        out = table[["id", "prompt", "language"]].copy()
    else:
        v.require_columns(frame, ["prompt"], file, " (or a pair file)")
        turns = v.text_column(frame["prompt"], file, json_list=False)
        n = len(frame)
        ids = [str(i) for i in range(n)]
        if "id" in frame.columns:
            for row, key in enumerate(frame["id"].tolist()):
                if v.is_blank(key):
                    raise v.row_error(file, row, "id", f"expected an id, found {v.describe(key)}")
            ids = [str(key) for key in frame["id"].tolist()]
        langs = frame["language"].tolist() if "language" in frame.columns else [UNKNOWN] * n
        langs = [UNKNOWN if v.is_blank(x) else str(x) for x in langs]
        out = pd.DataFrame({"id": ids, "prompt": turns, "language": langs}, dtype=object)
    for row, turns in enumerate(out["prompt"]):
        if not turns or any(v.is_blank(t) for t in turns):
            raise v.row_error(
                file, row, "prompt", f"expected non-blank user turns, found {turns!r}"
            )
    if dedupe:
        out = out.loc[~out["prompt"].map(tuple).duplicated()]
    v.check_unique_ids(out["id"], file)
    return out.iloc[:limit].reset_index(drop=True)

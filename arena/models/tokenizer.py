"""Tokenizers: real ones offline from disk, or a byte-level BPE trained locally for tiny twins.

A twin's tokenizer mimics its family: the same special tokens and chat markers as the real one
(Gemma: ``<bos>``/``<eos>``/``<pad>``/``<unk>`` and ``<start_of_turn>``; Qwen2: ``<|endoftext|>``
and ``<|im_start|>``; Llama 3: ``<|begin_of_text|>`` and ``<|eot_id|>``, no pad token; BERT and
DeBERTa: ``[CLS]``/``[SEP]``/... in their own id orders; RoBERTa / XLM-R: ``<s>``/``</s>``/...),
the same BOS / CLS-SEP framing, and token ids matching :data:`arena.models.tiny.TINY_ARCH`. It is
trained on a small built-in corpus in a fraction of a second, deterministically, and cached under
``cache_dir/tokenizers/<hash of the spec>``.

    tok = load_tokenizer(spec, cache_dir)
    batch = tok(["hello", "hola mundo"], padding=True, return_tensors="pt")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from arena.models.corpus import TWIN_CORPUS
from arena.utils.io import atomic_dir

if TYPE_CHECKING:
    from arena.models.backbone import BackboneSpec


@dataclass(frozen=True)
class _Family:
    """Special tokens of one tokenizer family: ``roles`` maps a role (pad, eos, ...) to a token."""

    roles: dict[str, str]
    markers: tuple[str, ...] = ()
    prefix: str | None = None  # prepended to every sequence (BOS or CLS)
    suffix: str | None = None  # appended to every sequence (SEP)
    specials: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        ordered = dict.fromkeys([*self.roles.values(), *self.markers])
        object.__setattr__(self, "specials", tuple(ordered))


_GEMMA = _Family(
    roles={"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>"},
    markers=("<start_of_turn>", "<end_of_turn>"),
    prefix="<bos>",
)
_QWEN = _Family(
    roles={"eos": "<|endoftext|>", "pad": "<|endoftext|>"},
    markers=("<|im_start|>", "<|im_end|>"),
)
_LLAMA = _Family(
    roles={"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>"},
    markers=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    prefix="<|begin_of_text|>",
)
_BERT = _Family(
    roles={"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    prefix="[CLS]",
    suffix="[SEP]",
)
# DeBERTa-v3's SentencePiece ids: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3; CLS and SEP double as BOS/EOS
_DEBERTA = _Family(
    roles={
        "pad": "[PAD]",
        "cls": "[CLS]",
        "sep": "[SEP]",
        "unk": "[UNK]",
        "mask": "[MASK]",
        "bos": "[CLS]",
        "eos": "[SEP]",
    },
    prefix="[CLS]",
    suffix="[SEP]",
)
# RoBERTa / XLM-R ids: <s>=0 <pad>=1 </s>=2 <unk>=3; the model numbers positions from pad id + 1,
# so the twin's pad id must be the arch's pad_token_id (1)
_ROBERTA = _Family(
    roles={
        "bos": "<s>",
        "pad": "<pad>",
        "eos": "</s>",
        "unk": "<unk>",
        "mask": "<mask>",
        "cls": "<s>",
        "sep": "</s>",
    },
    prefix="<s>",
    suffix="</s>",
)
_GENERIC = _Family(
    roles={"pad": "<pad>", "eos": "</s>", "bos": "<s>", "unk": "<unk>"}, prefix="<s>"
)
# Keyed by arch model_type; a family's definition is part of the twin cache key.
_FAMILIES: Final[dict[str, _Family]] = {
    "gemma": _GEMMA,
    "gemma2": _GEMMA,
    "gemma3_text": _GEMMA,
    "qwen2": _QWEN,
    "qwen3": _QWEN,
    "llama": _LLAMA,
    "bert": _BERT,
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "deberta-v2": _DEBERTA,
}


def load_tokenizer(spec: BackboneSpec, cache_dir: Path) -> PreTrainedTokenizerBase:
    """Load the backbone's tokenizer with its padding side and pad-token policy applied.

    Args:
        spec: The backbone. ``path`` (else ``hf_id``) is read offline; a ``random_init`` twin gets a
            locally trained byte-level BPE of at most ``spec.tokenizer_vocab_size`` tokens.
        cache_dir: Where twin tokenizers are cached.

    Returns:
        A fast tokenizer whose ``padding_side`` and ``pad_token`` follow the spec.

    Raises:
        FileNotFoundError: Real tokenizer files are not on disk (no download is attempted).
        ValueError: The pad-token policy names a token the tokenizer does not have.
    """
    if spec.random_init:
        return _load_twin_tokenizer(spec, Path(cache_dir))
    source = spec.path or spec.hf_id
    if source is None:
        raise ValueError(f"backbone {spec.name!r} needs backbone.path or backbone.hf_id")
    try:
        tok = AutoTokenizer.from_pretrained(
            source,
            local_files_only=True,
            padding_side=spec.padding_side,
            trust_remote_code=spec.trust_remote_code,
        )
    except OSError as err:
        raise FileNotFoundError(
            f"tokenizer of backbone {spec.name!r} not found offline at {source!r}; "
            "set backbone.path=<local directory with the tokenizer files>"
        ) from err
    pad = _pad_token_for(spec, {"eos": tok.eos_token, "unk": tok.unk_token, "pad": tok.pad_token})
    if pad != tok.pad_token:
        tok.pad_token = pad
    return tok


def _pad_token_for(spec: BackboneSpec, roles: dict[str, str | None]) -> str:
    """The pad token that ``spec.pad_token`` asks for, from the tokenizer's ``roles``."""
    role = "pad" if spec.pad_token == "existing" else spec.pad_token
    token = roles.get(role)
    if token is None:
        raise ValueError(
            f"backbone {spec.name!r}: pad_token={spec.pad_token!r} but the tokenizer has no "
            f"{role} token; set backbone.pad_token to one of "
            f"{[r for r in ('eos', 'unk') if roles.get(r) is not None]}"
        )
    return token


def _family(spec: BackboneSpec) -> _Family:
    model_type = (spec.arch or {}).get("model_type", "")
    return _FAMILIES.get(model_type, _GENERIC)


def _max_length(spec: BackboneSpec) -> int:
    return int((spec.arch or {}).get("max_position_embeddings", 2048))


def _twin_key(spec: BackboneSpec) -> str:
    """Hash of everything that changes a twin tokenizer's files: the corpus text itself, the
    family's special tokens and the spec's tokenizer settings."""
    model_type = (spec.arch or {}).get("model_type", "")
    payload = {
        "corpus": hashlib.sha256("\n".join(TWIN_CORPUS).encode()).hexdigest(),
        "family": repr(_family(spec)),
        "model_type": model_type,
        "vocab": spec.tokenizer_vocab_size,
        "padding_side": spec.padding_side,
        "pad_token": spec.pad_token,
        "max_length": _max_length(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _load_twin_tokenizer(spec: BackboneSpec, cache_dir: Path) -> PreTrainedTokenizerBase:
    model_vocab = (spec.arch or {}).get("vocab_size", spec.tokenizer_vocab_size)
    if model_vocab < spec.tokenizer_vocab_size:
        raise ValueError(
            f"backbone {spec.name!r}: tokenizer_vocab_size={spec.tokenizer_vocab_size} exceeds "
            f"arch.vocab_size={model_vocab}"
        )
    target = cache_dir / "tokenizers" / _twin_key(spec)
    if not (target / "tokenizer.json").exists():
        _atomic_save(_train_twin_tokenizer(spec), target)
    return PreTrainedTokenizerFast.from_pretrained(str(target), local_files_only=True)


def _train_twin_tokenizer(spec: BackboneSpec) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the built-in corpus and wrap it with the family's specials."""
    family = _family(spec)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.tokenizer_vocab_size,
        special_tokens=list(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TWIN_CORPUS, trainer=trainer)
    tok.post_processor = _framing(tok, family)
    roles = {role: family.roles.get(role) for role in ("bos", "eos", "unk", "pad")}
    pad = _pad_token_for(spec, roles)
    named = {f"{r}_token": t for r, t in family.roles.items() if r != "pad"}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        padding_side=spec.padding_side,
        model_max_length=_max_length(spec),
        extra_special_tokens=list(family.markers),
        **named,
    )


def _framing(tok: Tokenizer, family: _Family) -> processors.PostProcessor:
    """Post-processor adding the family's BOS (or CLS ... SEP) around every sequence."""
    pre = [family.prefix] if family.prefix else []
    post = [family.suffix] if family.suffix else []
    single = " ".join([*pre, "$A", *post])
    pair = " ".join([*pre, "$A", *post, "$B:1", *[f"{s}:1" for s in post]])
    used = [*pre, *post]
    return processors.TemplateProcessing(
        single=single,
        pair=pair,
        special_tokens=[(t, tok.token_to_id(t)) for t in dict.fromkeys(used)],
    )


def _atomic_save(tok: PreTrainedTokenizerBase, target: Path) -> None:
    """Save into a sibling temp dir and rename it into place (safe under concurrent ranks: the
    first to publish wins, with identical files)."""
    with atomic_dir(target, replace=False) as tmp:
        tok.save_pretrained(str(tmp))

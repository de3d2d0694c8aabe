"""The ``lm_tokens`` head: the backbone's own LM head scoring the label tokens at the last position.

    model = build_preference_model(spec, n_classes=3, head="lm_tokens", lora={"r": 16, "alpha": 32},
                                   cache_dir=cache)
    logits = model(input_ids, attention_mask)  # (B, 3): h_last @ W_lm[ids("A", "B", "tie")].T

Instead of a new classifier, the causal LM's next-token scores of the words ``A``, ``B`` (and
``tie`` with 3 classes) are the class logits; only LoRA adapters train. The label rows of the LM
head ``W_lm`` (the ``lm_head`` weight, or the input embeddings of a tied model) are taken once
and kept frozen in :class:`LabelTokenHead` (C, H), so no vocabulary-sized logits are ever
computed, and a family's final logit soft-capping (Gemma 2's ``final_logit_softcapping``) is
applied as its causal LM does.

Where the rows come from:

- weights on disk (``backbone.path`` / ``hf_id``): only the C rows are read from the safetensors
  file holding the LM head (``safe_open(...).get_slice``); no causal LM is loaded. A base merged
  by ``arena.merge`` (``<checkpoint>/backbone``, e.g. a post-pretrained base) is a bare trunk:
  an untied model's rows are then its origin's, the backbone of the checkpoint it was merged from
  (merging LoRA into the trunk never changes the LM head);
- a random twin (``random_init``): the twin is the trunk of the causal LM built from the same seed
  (transformers initialises the trunk first, so that ``AutoModel`` and ``AutoModelForCausalLM``
  draw the same trunk weights); its LM head is that causal LM's (tied: its own embeddings; untied,
  as ``tiny_llama``: its own ``lm_head``), built on the spot (a twin is tiny).

Label words map to token ids through the backbone's tokenizer: the first token of each word as
written (no leading space); the ids must be distinct. The rows are saved with every checkpoint
(:attr:`LabelTokenHead.kept_frozen`, see :func:`arena.models.preference.trainable_state_dict`):
a merged checkpoint's backbone is a bare trunk with no LM head, and loading then never depends on
re-reading the original weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import safe_open
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from arena.models.backbone import BackboneSpec, arch_config
from arena.models.quant import torch_dtype
from arena.models.tokenizer import load_tokenizer

LmTokens = Literal["lm_tokens"]
LM_TOKENS: Final = "lm_tokens"
#: the words whose tokens score the classes, in class order (A wins, B wins, tie)
LABEL_WORDS: Final[tuple[str, ...]] = ("A", "B", "tie")
_INDEX, _SINGLE = "model.safetensors.index.json", "model.safetensors"


class LabelTokenHead(nn.Module):
    """Logits of the label tokens from the last position's hidden state.

    Attributes:
        weight: (C, H) frozen fp32 rows of the LM head for the label tokens.
        label_ids: their token ids (None when built on the meta device or loaded into a plan).
        softcap: final logit soft-capping ``cap * tanh(logits / cap)``, or None.
        kept_frozen: frozen parameters a checkpoint stores all the same (the rows).
    """

    kept_frozen: Final[tuple[str, ...]] = ("weight",)

    def __init__(
        self, weight: torch.Tensor, label_ids: Sequence[int] | None, softcap: float | None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float(), requires_grad=False)
        self.label_ids = None if label_ids is None else tuple(int(i) for i in label_ids)
        self.softcap = None if softcap is None else float(softcap)

    def forward(self, pooled: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Compute logits.

        Args:
            pooled: (B, H) hidden states at every sequence's last token (after the final norm).
            features: None or an empty (B, 0) tensor; engineered features are refused.

        Returns:
            (B, C) logits, as the causal LM gives for the label tokens at that position.
        """
        if features is not None and features.shape[-1] != 0:
            raise ValueError(
                f"head 'lm_tokens' got features of shape {tuple(features.shape)}; "
                "use model.head=fusion with model.n_features to use them"
            )
        logits = pooled @ self.weight.T  # (B, C)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def extra_repr(self) -> str:
        rows, hidden = self.weight.shape
        return f"labels={rows}, hidden={hidden}, ids={self.label_ids}, softcap={self.softcap}"


def check_lm_tokens(
    spec: BackboneSpec,
    *,
    architecture: str,
    n_features: int,
    pooling: str | None,
    lora: Mapping[str, Any] | None,
    meta: bool,
) -> None:
    """Refuse what an ``lm_tokens`` model cannot be, before any weights load.

    A model built to train needs LoRA: the label rows stay frozen and a full fine-tune would
    decouple them from the embeddings they are tied to. Built on the meta device (a plan, or the
    shell of a merged checkpoint that then loads its frozen backbone) it may have none.

    Raises:
        ValueError: an encoder, a siamese model, features, pooling other than the last token, or
            no LoRA outside the meta device.
    """
    why = None
    if spec.kind != "decoder":
        why = f"needs a causal LM: backbone {spec.name!r} is an encoder"
    elif architecture != "joint":
        why = f"scores one sequence per pair: set model.architecture=joint, not {architecture!r}"
    elif n_features:
        why = "reads no engineered features: use head=fusion for them (or data.features=false)"
    elif pooling not in (None, "last"):
        why = f"reads the last token's state (the LM's next-token scores): pooling={pooling!r}"
    elif lora is None and not meta:
        why = "trains LoRA adapters only (its label rows are the frozen LM head): set model.lora"
    if why is not None:
        raise ValueError(f"head=lm_tokens {why}")


def label_token_ids(
    tokenizer: PreTrainedTokenizerBase, words: Sequence[str] = LABEL_WORDS
) -> tuple[int, ...]:
    """The first token id of each word (encoded as written, without special tokens).

    Raises:
        ValueError: a word encodes to nothing or to the unknown token, or two words share a
            first token.
    """
    ids = []
    for word in words:
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if not tokens or tokens[0] == tokenizer.unk_token_id:
            raise ValueError(f"label word {word!r} has no token of its own in this tokenizer")
        ids.append(int(tokens[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {list(words)} share first tokens: ids {ids}")
    return tuple(ids)


def make_lm_tokens_head(
    spec: BackboneSpec,
    config: PretrainedConfig,
    n_classes: int,
    *,
    cache_dir: Path,
    meta: bool = False,
) -> LabelTokenHead:
    """The head of ``spec``'s label tokens (see the module docstring for where rows come from).

    Args:
        spec: The backbone.
        config: Its transformers config (hidden size, soft-capping).
        n_classes: 2 (``A``, ``B``) or 3 (and ``tie``).
        cache_dir: Cache for twin tokenizers.
        meta: Rows on the meta device, nothing read (a plan, or a merged checkpoint's shell whose
            rows then load from its weights file).

    Raises:
        ValueError: ``n_classes`` not 2 or 3, unusable label words, or no LM head in the weights.
        FileNotFoundError: the weights are not on disk.
    """
    if n_classes not in (2, 3):
        raise ValueError(f"head=lm_tokens needs n_classes 2 or 3, got {n_classes}")
    softcap = getattr(config, "final_logit_softcapping", None)
    if meta:
        rows = torch.empty(n_classes, config.hidden_size, device="meta")
        return LabelTokenHead(rows, None, softcap)
    ids = label_token_ids(load_tokenizer(spec, cache_dir), LABEL_WORDS[:n_classes])
    return LabelTokenHead(label_rows(spec, ids), ids, softcap)


def label_rows(spec: BackboneSpec, ids: Sequence[int]) -> torch.Tensor:
    """(C, H) LM-head rows of ``ids``: a twin's from its seed, else read from disk."""
    return twin_label_rows(spec, ids) if spec.random_init else read_label_rows(spec, ids)


def _causal_lm(
    spec: BackboneSpec, config: PretrainedConfig
) -> tuple[PreTrainedModel, nn.Parameter]:
    """The causal LM of ``config`` (on the current device) and its LM head's weight."""
    lm = AutoModelForCausalLM.from_config(
        config,
        dtype=torch_dtype(spec.dtype),
        attn_implementation="eager",  # never runs: only the weights are used
        trust_remote_code=spec.trust_remote_code,
    )
    head = lm.get_output_embeddings()
    if not isinstance(head, nn.Module) or not isinstance(head.weight, nn.Parameter):
        raise ValueError(f"head=lm_tokens: {type(lm).__name__} has no LM head weight")
    return lm, head.weight


def twin_label_rows(spec: BackboneSpec, ids: Sequence[int]) -> torch.Tensor:
    """(C, H) LM-head rows of a random twin: its causal LM built from ``spec.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        _, weight = _causal_lm(spec, arch_config(spec))
    return weight.detach()[list(ids)].clone()


def read_label_rows(spec: BackboneSpec, ids: Sequence[int]) -> torch.Tensor:
    """(C, H) LM-head rows read from the safetensors of ``spec.path`` (else the cached
    ``hf_id``): only those rows, through ``get_slice``.

    A merged base without an LM head reads its origin's (:func:`merged_origin`).

    Raises:
        FileNotFoundError: no safetensors weights there.
        ValueError: they hold no LM head (a bare trunk of an untied model, not merged by arena)
            or fewer rows than the ids need.
    """
    source = str(spec.path or spec.hf_id)
    keys = _weight_map(source)
    names = lm_head_names(spec)
    key = next((n for n in names if n in keys), None)
    if key is None:
        origin = merged_origin(spec)
        if origin is not None:
            return label_rows(origin, ids)
        raise ValueError(
            f"head=lm_tokens: no LM head ({' or '.join(names)}) in the weights at {source!r}; "
            "it needs a causal LM's weights (a bare trunk of an untied model has none)"
        )
    file = _local_file(source, keys[key])
    if file is None:
        raise FileNotFoundError(f"head=lm_tokens: {keys[key]} (holding {key}) is not at {source!r}")
    with safe_open(str(file), framework="pt") as weights:
        table = weights.get_slice(key)
        vocab = table.get_shape()[0]
        if max(ids) >= vocab:
            raise ValueError(f"label token ids {list(ids)} exceed the {vocab} rows of {key}")
        return torch.cat([table[i : i + 1] for i in ids])  # (C, H)


def merged_origin(spec: BackboneSpec) -> BackboneSpec | None:
    """The backbone that the trunk at ``spec.path`` was merged from, when it is the ``backbone``
    dir of a checkpoint written by ``arena.merge`` (its first source's backbone); else None.

    Raises:
        ValueError: the merge's sources are gone.
    """
    # imported here: arena.models.checkpoint imports this module (through preference)
    from arena.models.checkpoint import BACKBONE_DIR, WEIGHTS_FILE, read_spec

    directory = Path(spec.path or "")
    if directory.name != BACKBONE_DIR or not (directory.parent / WEIGHTS_FILE).is_file():
        return None
    merge = read_spec(directory.parent).merge
    if not merge:
        return None
    source = merge["sources"][0]
    try:
        return read_spec(source).backbone
    except FileNotFoundError as err:
        raise ValueError(
            f"head=lm_tokens: the merged trunk at {directory} has no LM head and the checkpoint "
            f"it was merged from ({source}) is gone; its LM head rows cannot be found"
        ) from err


def lm_head_names(spec: BackboneSpec) -> list[str]:
    """Names the LM head's weight may be stored under: the causal LM's own (a tied model's
    input embeddings first), then without the trunk prefix (a trunk saved alone)."""
    with torch.device("meta"):
        lm, weight = _causal_lm(spec, arch_config(spec))
    names = [n for n, p in lm.named_parameters(remove_duplicate=False) if p is weight]
    prefix = f"{lm.base_model_prefix}."
    return [*names, *(n.removeprefix(prefix) for n in names if n.startswith(prefix))]


def _weight_map(source: str) -> dict[str, str]:
    """Tensor name -> safetensors file name of the weights at ``source`` (offline)."""
    index = _local_file(source, _INDEX)
    if index is not None:
        return dict(json.loads(index.read_text())["weight_map"])
    single = _local_file(source, _SINGLE)
    if single is None:
        raise FileNotFoundError(
            f"head=lm_tokens: no {_SINGLE} (or {_INDEX}) offline at {source!r}; nothing is "
            "downloaded: set backbone.spec.path=<local directory with the safetensors weights>"
        )
    with safe_open(str(single), framework="pt") as weights:
        return dict.fromkeys(weights.keys(), _SINGLE)


def _local_file(source: str, name: str) -> Path | None:
    """``name`` in the directory ``source``, or in the local HF cache of the hub id ``source``."""
    if Path(source).is_dir():
        path = Path(source) / name
        return path if path.is_file() else None
    found = try_to_load_from_cache(source, name)
    return Path(found) if isinstance(found, str) else None

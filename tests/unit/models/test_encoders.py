"""The DeBERTa-v2/v3 and XLM-RoBERTa encoder backbones: their tiny twins build from config with a
family tokenizer and train, and the real YAMLs' architectures price the published models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

import arena.models.backbone as backbone_module
from arena.data.batching import pad
from arena.data.format import Budget, Formatter
from arena.models import (
    TINY_ARCH,
    BackboneSpec,
    build_backbone,
    build_preference_model,
    layer_classes,
    load_tokenizer,
)
from arena.models.checkpoint import _position_limit
from arena.models.sizing import count_params
from arena.utils.config import cpu_overrides
from tests.conftest import compose_cfg

#: twin backbone -> (TINY_ARCH key, the real backbone it stands in for, its class token, LoRA
#: targets that must be adapted)
TWINS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "tiny_deberta_v2": ("deberta_v2", "deberta_v3_large", "[CLS]", ("query_proj", "dense")),
    "tiny_xlm_roberta": ("xlm_roberta", "xlm_roberta_large", "<s>", ("query", "output.dense")),
}
TEXTS = [
    "Which response is better? ¿Cuál es la mejor?",
    "def add(a, b):\n    return a + b  # 你好, Привет",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encoders")


def composed(backbone: str, tmp_path: Path) -> DictConfig:
    return compose_cfg([f"backbone={backbone}"], tmp_path).backbone


def formatted(backbone: DictConfig, tok: Any) -> list[np.ndarray]:
    """Two pairs laid out by the backbone's template, as training formats them."""
    budget = Budget(max_length=64, min_field_tokens=4)
    fmt = Formatter(
        instantiate(backbone.template),
        budget,
        lambda s: tok(s, add_special_tokens=False)["input_ids"],
    )

    def ids(text: str) -> list[np.ndarray]:
        return [np.asarray(tok(text, add_special_tokens=False)["input_ids"])]

    return [fmt(ids(TEXTS[0]), ids(TEXTS[1]), ids("ok")), fmt(ids("hi"), ids("yes"), ids("no"))]


@pytest.mark.parametrize("name", TWINS)
def test_twin_builds_from_its_yaml(name: str, cache: Path, tmp_path: Path) -> None:
    key, real, _, _ = TWINS[name]
    backbone = composed(name, tmp_path)
    spec: BackboneSpec = instantiate(backbone.spec)
    assert spec.arch == TINY_ARCH[key]  # the YAML and the importable dict agree
    assert spec.random_init and spec.kind == "encoder"
    assert composed(real, tmp_path).twin == name  # the real backbone names this twin
    model = build_backbone(spec, cache_dir=cache)
    assert model.config.model_type == spec.arch["model_type"]
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert {c.__name__ for c in layer_classes(model, spec)} == {spec.decoder_layer}
    again = build_backbone(spec, cache_dir=cache)  # same seed, same weights
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", TWINS)
def test_twin_tokenizer_round_trips_with_family_ids(name: str, cache: Path, tmp_path: Path) -> None:
    key, _, cls_token, _ = TWINS[name]
    backbone = composed(name, tmp_path)
    spec = instantiate(backbone.spec)
    tok = load_tokenizer(spec, cache)
    arch = TINY_ARCH[key]
    # XLM-R numbers positions from its pad id: the tokenizer's pad must be the model's
    assert tok.pad_token_id == arch["pad_token_id"]
    assert tok.padding_side == "right"
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        framed = tok(text)["input_ids"]
        assert framed[0] == tok.convert_tokens_to_ids(cls_token) != tok.pad_token_id
        assert framed[1:-1] == ids and framed[-1] == tok.sep_token_id
    # the template's markers are single special tokens, as in the real tokenizers
    seqs = formatted(backbone, tok)
    assert seqs[0][0] == tok.convert_tokens_to_ids(cls_token)
    assert seqs[0][-1] == tok.sep_token_id
    assert tok.unk_token_id not in np.concatenate(seqs)


@pytest.mark.parametrize("name", TWINS)
@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8, "dropout": 0.0}])
def test_twin_trains_one_step(
    name: str, lora: dict[str, Any] | None, cache: Path, tmp_path: Path
) -> None:
    _, _, _, targets = TWINS[name]
    backbone = composed(name, tmp_path)
    spec = instantiate(backbone.spec)
    tok = load_tokenizer(spec, cache)
    seqs = formatted(backbone, tok)
    ids, mask = pad(seqs, tok.pad_token_id, "right")  # (2, T)
    torch.manual_seed(0)
    model = build_preference_model(spec, n_classes=2, cache_dir=cache, lora=lora)
    loss = F.cross_entropy(model(ids, mask), torch.tensor([0, 1]))  # (2, 2) logits
    loss.backward()
    assert torch.isfinite(loss)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # every trained weight but the pooler no pooling reads gets a gradient (DDP would fail on one)
    no_grad = sorted(n for n, p in trained.items() if p.grad is None and "pooler" not in n)
    assert not no_grad
    assert all(torch.isfinite(p.grad).all() for p in trained.values() if p.grad is not None)
    if lora is not None:
        adapted = {n.split(".lora_A")[0] for n in trained if ".lora_A" in n}
        assert all(any(a.endswith(t) for a in adapted) for t in targets)
        assert not any("pooler" in a for a in adapted)
    # eval: a row scores the same alone as padded beside a longer one
    model.eval()
    with torch.no_grad():
        both = model(ids, mask)
        alone_ids, alone_mask = pad(seqs[1:], tok.pad_token_id, "right")
        alone = model(alone_ids, alone_mask)
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("backbone", "published", "embedding"),
    [
        # DeBERTa-v3-large: 304M backbone + 131M embeddings (128k vocabulary, relative positions)
        ("deberta_v3_large", 435e6, 131e6),
        # XLM-R large: 560M, of which 256M are embeddings (250k vocabulary)
        ("xlm_roberta_large", 560e6, 256e6),
    ],
)
def test_real_yaml_prices_the_published_model_on_meta(
    backbone: str, published: float, embedding: float, tmp_path: Path
) -> None:
    spec = instantiate(composed(backbone, tmp_path).spec)
    model = build_backbone(spec, cache_dir=tmp_path, meta=True)
    counts = count_params(model)
    assert abs(counts["total"] - published) < 0.05 * published
    assert abs(counts["embedding"] - embedding) < 0.05 * embedding
    assert all(p.is_meta for p in model.parameters())  # nothing was allocated or downloaded
    assert _position_limit(spec) == 512  # XLM-R: 514 positions numbered from pad id + 1


@pytest.mark.parametrize(
    ("backbone", "on_cpu", "on_cuda_with_flash_attn"),
    [
        # disentangled attention: transformers has only an eager path for DeBERTa-v2
        ("deberta_v3_large", "eager", "eager"),
        ("xlm_roberta_large", "sdpa", "flash_attention_2"),
    ],
)
def test_attention_is_one_transformers_accepts(
    backbone: str,
    on_cpu: str,
    on_cuda_with_flash_attn: str,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = instantiate(composed(backbone, tmp_path).spec)
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: False)
    assert spec.attention() == on_cpu
    twin = instantiate(composed(composed(backbone, tmp_path).twin, tmp_path).spec)
    assert build_backbone(twin, cache_dir=cache).config._attn_implementation == on_cpu
    if backbone.startswith("deberta"):  # why eager: transformers refuses the fused kernels
        with pytest.raises(ValueError, match="does not support"):
            backbone_module.AutoModel.from_config(
                backbone_module.arch_config(twin), attn_implementation="sdpa"
            )
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backbone_module.importlib.util, "find_spec", lambda name: object())
    assert spec.attention() == on_cuda_with_flash_attn


@pytest.mark.parametrize(
    ("experiment", "twin"),
    [
        ("label_correction_deberta_v3_large", "tiny_deberta_v2"),
        ("label_correction_xlm_roberta_large", "tiny_xlm_roberta"),
    ],
)
def test_label_correction_is_a_full_fine_tune_run_on_its_twin(
    experiment: str, twin: str, tmp_path: Path
) -> None:
    cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
    assert cfg.model.model_factory.lora is None and cfg.data.n_classes == 2
    assert cfg.callbacks.oof_writer.tta  # swap-TTA OOF probabilities correct the labels
    assert cfg.backbone.spec.dtype == "float32"  # fp32 weights under bf16-mixed
    assert f"backbone={twin}" in cpu_overrides(cfg)

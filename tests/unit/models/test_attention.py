"""Exact fast attention: each family lists the implementations exact for it, fastest first, and
the first this machine runs is loaded; each gives eager attention's logits, padded and packed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

import arena.models.backbone as backbone_module
from arena.data.batching import model_inputs, pack, pad
from arena.models import build_preference_model
from arena.models.backbone import resolve_packing
from tests.conftest import compose_cfg
from tests.unit.models.test_models import twin


@pytest.mark.parametrize(
    ("backbone", "on_cpu", "on_cuda_with_flash_attn"),
    [
        ("gemma2_9b", "eager", "flash_attention_2"),
        ("qwen2_5_14b", "sdpa", "flash_attention_2"),
        ("llama3_70b", "sdpa", "flash_attention_2"),
    ],
)
def test_the_first_implementation_this_machine_runs_is_chosen(
    backbone: str,
    on_cpu: str,
    on_cuda_with_flash_attn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = instantiate(compose_cfg([f"backbone={backbone}"], tmp_path).backbone.spec)
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: False)
    assert spec.attention() == on_cpu
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backbone_module.importlib.util, "find_spec", lambda name: object())
    assert spec.attention() == on_cuda_with_flash_attn
    if backbone == "gemma2_9b":  # no flash-attn package: flex attention, soft-capping included
        monkeypatch.setattr(backbone_module.importlib.util, "find_spec", lambda name: None)
        assert spec.attention() == "flex_attention"


def test_a_list_nothing_here_runs_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: False)
    spec = twin("qwen2", attn_implementation=["flash_attention_2"])
    with pytest.raises(ValueError, match="none of attn_implementation.*add eager"):
        spec.attention()


def logits_by(family: str, attn: str, tmp_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(padded, packed) logits of a tiny ``family`` twin loaded with ``attn``."""
    torch.manual_seed(0)
    spec = twin(family, attn_implementation=attn)
    model = build_preference_model(spec, n_classes=3, cache_dir=tmp_path).eval()
    gen = torch.Generator().manual_seed(3)
    seqs = [torch.randint(5, 200, (n,), generator=gen).numpy() for n in (37, 5, 23, 12)]
    ids, mask = pad(seqs, 0, "right")  # type: ignore[arg-type]
    with torch.no_grad():
        return model(ids, mask), model(**model_inputs(pack(seqs, 48)))


@pytest.mark.parametrize(
    ("family", "fast"),
    [
        ("qwen2", "sdpa"),
        ("llama", "sdpa"),
        pytest.param("gemma2", "flex_attention", marks=pytest.mark.slow),  # compiles ~1 min
    ],
)
def test_fast_attention_gives_eager_attentions_logits(
    family: str, fast: str, tmp_path: Path
) -> None:
    eager = logits_by(family, "eager", tmp_path)[0]
    for got in logits_by(family, fast, tmp_path):
        assert (got - eager).abs().max() <= 1e-5


def test_packing_auto_packs_where_the_attention_kernel_skips_masked_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoder = twin("qwen2", attn_implementation=["flash_attention_2", "sdpa"])
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: False)
    assert not resolve_packing("auto", decoder)  # sdpa here: padding is cheaper
    assert resolve_packing(True, decoder) and not resolve_packing(False, decoder)
    monkeypatch.setattr(backbone_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backbone_module.importlib.util, "find_spec", lambda name: object())
    assert resolve_packing("auto", decoder)  # flash-attn: varlen, nothing masked is computed
    assert not resolve_packing("auto", twin("bert"))
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_packing("yes", decoder)

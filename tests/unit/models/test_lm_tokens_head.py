"""head=lm_tokens: the label tokens' scores from the backbone's own LM head at the last token equal
the causal LM's ``logits[:, -1, label_ids]`` (Gemma 2 soft-capped, Qwen2 tied, Llama untied),
without ever computing vocabulary-sized logits; rows are read from disk slice by slice; only LoRA
trains; save -> load, fold merging, k-bit copies, swap TTA and packing keep the logits."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM

import arena.models.lm_head
from arena.data.batching import model_inputs, pack, pad
from arena.data.format import Budget
from arena.data.synthetic import make_synthetic
from arena.inference import TTA, Ensemble, Predictor
from arena.models import (
    CheckpointSpec,
    ModelOptions,
    build_preference_model,
    load_checkpoint,
    load_tokenizer,
    save_checkpoint,
    trainable_state_dict,
)
from arena.models.backbone import BackboneSpec, arch_config
from arena.models.lm_head import LabelTokenHead, label_token_ids
from arena.models.merge import merge_checkpoints, quantized_copy, save_merged
from tests.helpers import BUDGET, TEMPLATE
from tests.unit.models.test_models import LORA, SPEC_OVERRIDES, padded, twin

VOCAB = 4096
LENGTHS = (19, 7, 12)


class ShapeProbe(TorchDispatchMode):
    """Records the shape of every tensor an aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def vocab_sized(shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    return [s for s in shapes if VOCAB in s]


def sequences(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(5, VOCAB, (n,), generator=gen) for n in LENGTHS]


def reference(lm: torch.nn.Module, seqs: list[torch.Tensor], ids: tuple[int, ...]) -> torch.Tensor:
    """The causal LM's scores of ``ids`` after each sequence, read alone (no padding)."""
    with torch.no_grad():
        return torch.cat([lm(input_ids=s[None]).logits[:, -1, list(ids)] for s in seqs])


def lm_twin(spec: BackboneSpec) -> torch.nn.Module:
    """The twin as a whole causal LM, from its config and seed."""
    torch.manual_seed(spec.seed)
    config = arch_config(spec)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


def lm_tokens_model(spec: BackboneSpec, cache: Path, **kw: Any) -> torch.nn.Module:
    kw = {"n_classes": 3, "head": "lm_tokens", "lora": LORA, **kw}
    return build_preference_model(spec, cache_dir=cache, **kw).eval()


@pytest.mark.parametrize(
    ("family", "overrides"),
    [
        # a cap of 0.2 squashes these logits (up to ~0.4) hard: uncapped they would differ by far
        ("gemma2", {"arch": {**twin("gemma2").arch, "final_logit_softcapping": 0.2}}),
        ("qwen2", {}),
        ("llama", {}),
    ],
)
def test_logits_equal_the_causal_lm_at_the_last_token(
    family: str, overrides: dict[str, Any], tmp_path: Path
) -> None:
    spec = twin(family, **overrides)
    lm = lm_twin(spec)
    model = lm_tokens_model(spec, tmp_path)
    head = model.head
    assert isinstance(head, LabelTokenHead)
    ids = label_token_ids(load_tokenizer(spec, tmp_path))
    assert head.label_ids == ids and len(set(ids)) == 3
    out = lm.get_output_embeddings().weight
    tied = out is lm.get_input_embeddings().weight
    assert tied == (family != "llama")  # Llama's LM head is a matrix of its own
    assert torch.equal(head.weight, out[list(ids)])
    assert head.softcap == (0.2 if family == "gemma2" else None)

    seqs = sequences()
    expected = reference(lm, seqs, ids)
    ids_, mask = padded(seqs, SPEC_OVERRIDES[family].get("padding_side", "right"))
    probe = ShapeProbe()
    with torch.no_grad(), probe:
        logits = model(ids_, mask)
    assert logits.shape == (3, 3)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert not vocab_sized(probe.shapes), "a vocabulary-sized tensor was computed"
    with torch.no_grad(), ShapeProbe() as full:  # the probe sees the LM's own logits
        lm(input_ids=ids_[:1])
    assert vocab_sized(full.shapes)
    if family == "gemma2":
        raw = model.encode(ids_, mask) @ head.weight.T
        assert (raw - expected).abs().max() > 0.05 and expected.abs().max() < 0.2


@contextmanager
def sliced_reads_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """safetensors files opened by the head: every whole-tensor read is refused; yields the
    (tensor, rows) of every slice read."""
    reads: list[tuple[str, int]] = []

    class Opened:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def keys(self) -> list[str]:
            return self.handle.keys()

        def get_tensor(self, name: str) -> torch.Tensor:
            raise AssertionError(f"read {name} whole")

        def get_slice(self, name: str) -> Any:
            table = self.handle.get_slice(name)

            class Rows:
                def get_shape(self) -> list[int]:
                    return table.get_shape()

                def __getitem__(self, index: slice) -> torch.Tensor:
                    rows = table[index]
                    reads.append((name, rows.shape[0]))
                    return rows

            return Rows()

    @contextmanager
    def opened(path: str, framework: str) -> Iterator[Opened]:
        with safe_open(path, framework=framework) as handle:
            yield Opened(handle)

    def no_causal_lm(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loaded a whole causal LM")

    monkeypatch.setattr(arena.models.lm_head, "safe_open", opened)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_causal_lm)
    yield reads


@pytest.mark.parametrize(("name", "shards"), [("chat", None), ("base", None), ("base", "300KB")])
def test_rows_on_disk_are_read_slice_by_slice(
    decoders: dict[str, Path],
    name: str,
    shards: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Qwen2 (``chat``, tied: the embeddings' rows) and Llama (``base``, untied: ``lm_head``'s,
    also from a sharded checkpoint) saved as causal LMs."""
    source = decoders[name]
    lm = AutoModelForCausalLM.from_pretrained(source).eval()
    if shards is not None:
        lm.save_pretrained(tmp_path / "llama_sharded", max_shard_size=shards)
        load_tokenizer(dummy_spec(source), tmp_path).save_pretrained(tmp_path / "llama_sharded")
        source = tmp_path / "llama_sharded"
        assert (source / "model.safetensors.index.json").is_file()
    spec = dummy_spec(source)
    with sliced_reads_only(monkeypatch) as reads:
        model = lm_tokens_model(spec, tmp_path)
    key = "model.embed_tokens.weight" if name == "chat" else "lm_head.weight"
    assert reads == [(key, 1)] * 3
    ids = model.head.label_ids
    seqs = sequences(1)
    with torch.no_grad():
        logits = model(*padded(seqs, spec.padding_side))
    torch.testing.assert_close(logits, reference(lm, seqs, ids), atol=1e-5, rtol=1e-5)


def dummy_spec(path: Path) -> BackboneSpec:
    return BackboneSpec(
        name="saved",
        kind="decoder",
        path=str(path),
        pad_token="eos" if path.name.startswith("llama") else "existing",
        lora_targets=("q_proj", "v_proj"),
    )


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_a_bare_trunk_holds_the_rows_only_when_tied(family: str, tmp_path: Path) -> None:
    """A trunk saved alone (not by arena.merge): a tied model's embeddings are its LM head, an
    untied model's LM head is missing and the error says so."""
    trunk, lm = tmp_path / f"{family}_trunk", lm_twin(twin(family))
    lm.model.save_pretrained(trunk)
    load_tokenizer(twin(family), tmp_path).save_pretrained(trunk)
    if family == "llama":
        with pytest.raises(ValueError, match="no LM head .*lm_head.weight.* bare trunk"):
            lm_tokens_model(dummy_spec(trunk), tmp_path)
        return
    head = lm_tokens_model(dummy_spec(trunk), tmp_path).head
    assert torch.equal(head.weight, lm.lm_head.weight[list(head.label_ids)])


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """LoRA B != 0 (drawn from ``seed``): the adapters move the logits."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    return model


def fold(root: Path, cache: Path, seed: int, n_classes: int = 2) -> Path:
    """An lm_tokens LoRA checkpoint on the untied Llama twin (its rows exist nowhere else)."""
    spec = twin("llama")
    model = randomised(lm_tokens_model(spec, cache, n_classes=n_classes), seed)
    options = ModelOptions(n_classes=n_classes, head="lm_tokens", lora=LORA)
    ckpt = CheckpointSpec(spec, options, TEMPLATE, Budget(**BUDGET), run={"seed": seed})
    return save_checkpoint(model, load_tokenizer(spec, cache), ckpt, root / f"fold{seed}")


@pytest.fixture(scope="module")
def folds(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm_tokens")
    cache = root / "cache"
    return {"f0": fold(root, cache, 0), "f1": fold(root, cache, 1), "cache": cache}


def logits_of(model: torch.nn.Module, seed: int = 2) -> torch.Tensor:
    with torch.inference_mode():
        return model(*padded(sequences(seed), "left"))


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_trains_lora_only_and_save_load_gives_identical_logits(family: str, tmp_path: Path) -> None:
    spec = twin(family)
    model = randomised(lm_tokens_model(spec, tmp_path), 7)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    stored = trainable_state_dict(model)  # what the checkpoint keeps: LoRA + the frozen rows
    assert set(stored) == trained | {"head.weight"} and stored["head.weight"].shape == (3, 64)

    options = ModelOptions(n_classes=3, head="lm_tokens", lora=LORA)
    ckpt = CheckpointSpec(spec, options, TEMPLATE, Budget(**BUDGET))
    saved = save_checkpoint(model, load_tokenizer(spec, tmp_path), ckpt, tmp_path / "ckpt")
    moved = Path(shutil.copytree(saved, tmp_path / "moved"))
    loaded, _, config = load_checkpoint(moved, cache_dir=tmp_path)
    assert config.model.head == "lm_tokens" and isinstance(loaded.head, LabelTokenHead)
    assert torch.equal(logits_of(loaded), logits_of(model))
    with model.backbone.disable_adapter():  # the adapters matter: they were restored too
        assert (logits_of(model) - logits_of(loaded)).abs().max() > 1e-4


def test_lora_alone_learns_through_the_frozen_rows(tmp_path: Path) -> None:
    model = lm_tokens_model(twin("qwen2"), tmp_path, n_classes=2).train()
    rows = model.head.weight.clone()
    batch, target = padded(sequences(3) + sequences(4), "left"), torch.tensor([0, 1, 1, 1, 0, 0])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(*batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and torch.equal(model.head.weight, rows)


def test_full_fine_tunes_and_unreadable_setups_are_refused(tmp_path: Path) -> None:
    cases = [
        ({"lora": None}, "trains LoRA adapters only.*set model.lora"),
        ({"architecture": "siamese"}, "model.architecture=joint"),
        ({"pooling": "mean"}, "last token"),
        ({"head": "lm_tokens", "n_features": 4}, "no engineered features"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            lm_tokens_model(twin("qwen2"), tmp_path, **kw)
    with pytest.raises(ValueError, match="needs a causal LM.*encoder"):
        lm_tokens_model(twin("bert"), tmp_path)
    tokenizer = load_tokenizer(twin("qwen2"), tmp_path)
    with pytest.raises(ValueError, match="share first tokens"):
        label_token_ids(tokenizer, ("tie", "tied"))
    plan = lm_tokens_model(twin("qwen2"), tmp_path, lora=None, meta=True)  # plans and merges
    assert plan.head.weight.is_meta and plan.head.weight.shape == (3, 64)


def test_fold_merge_reloads_identically_and_merging_a_fold_twice_gives_it(folds) -> None:
    cache, paths = folds["cache"], [folds["f0"], folds["f1"]]
    merged, tokenizer, spec = merge_checkpoints(paths, method="delta", cache_dir=cache)
    assert spec.model.head == "lm_tokens" and spec.model.lora is None
    assert not any(p.requires_grad for p in merged.parameters())  # nothing left to train
    out = save_merged(merged, tokenizer, spec, paths[0].parent / "merged")
    with safe_open(str(out / "backbone" / "model.safetensors"), framework="pt") as f:
        keys = f.keys()
    assert keys and not [k for k in keys if "lm_head" in k]  # rows come from the checkpoint
    loaded, _, _ = load_checkpoint(out, cache_dir=cache)
    assert torch.equal(logits_of(loaded), logits_of(merged))
    rows = load_checkpoint(paths[0], cache_dir=cache)[0].head.weight
    assert torch.equal(loaded.head.weight, rows)

    fold0 = logits_of(load_checkpoint(paths[0], cache_dir=cache)[0])
    twice, _, _ = merge_checkpoints([paths[0]] * 2, method="delta", cache_dir=cache)
    torch.testing.assert_close(logits_of(twice), fold0, atol=1e-5, rtol=0)
    assert (logits_of(merged) - fold0).abs().max() > 1e-4  # the second fold moved it


def test_a_merged_base_reads_the_rows_of_its_origin(folds) -> None:
    """A base merged by arena.merge (e.g. post-pretrained) is a bare trunk: an untied model's
    rows come from the backbone its folds trained on; a fresh LoRA on it scores as the merge."""
    cache = folds["cache"]
    merged = folds["f0"].parent / "merged"
    if not merged.exists():
        save_merged(*merge_checkpoints([folds["f0"], folds["f1"]], cache_dir=cache), merged)
    shutil.copytree(merged / "tokenizer", merged / "backbone", dirs_exist_ok=True)  # a whole base
    base = dataclasses.replace(twin("llama"), path=str(merged / "backbone"), random_init=False)
    model = lm_tokens_model(base, cache, n_classes=2)
    assert torch.equal(
        model.head.weight, lm_twin(twin("llama")).lm_head.weight[list(model.head.label_ids)]
    )
    torch.testing.assert_close(
        logits_of(model), logits_of(load_checkpoint(merged, cache_dir=cache)[0]), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_copy_of_a_merged_model(folds, bits: int) -> None:
    cache, paths = folds["cache"], [folds["f0"], folds["f1"]]
    full = paths[0].parent / "merged_q"
    if not full.exists():
        save_merged(*merge_checkpoints(paths, cache_dir=cache), full)
    model, tokenizer, spec = quantized_copy(full, f"{bits}bit", cache_dir=cache)  # type: ignore[arg-type]
    out = save_merged(model, tokenizer, spec, full.parent / f"merged_{bits}bit")
    loaded, _, _ = load_checkpoint(out, cache_dir=cache)
    torch.testing.assert_close(logits_of(loaded), logits_of(model), atol=1e-6, rtol=0)
    reference = logits_of(load_checkpoint(full, cache_dir=cache)[0])
    gap = (logits_of(loaded) - reference).abs().max() / reference.std()
    assert 0 < gap < {8: 0.05, 4: 0.5}[bits]


def test_swap_tta_and_packed_scoring(folds) -> None:
    cache = folds["cache"]
    table = make_synthetic(24, seed=4)
    plain = Predictor.from_checkpoint(folds["f0"], cache_dir=cache, batch_size=8)
    packed = Predictor.from_checkpoint(folds["f0"], cache_dir=cache, batch_size=8, packing=True)
    probs = plain.predict(table)
    assert np.abs(packed.predict(table) - probs).max() < 1e-5
    swapped = plain.log_probs(plain.encode(table), np.arange(len(table)), swapped=True)
    full = Ensemble([plain]).predict(table, TTA("full"))
    assert np.abs(full.probs - (probs + np.exp(swapped)) / 2).max() < 1e-6
    assert np.abs(np.exp(swapped) - probs).max() > 1e-4  # the swapped pass is another input


def test_packed_rows_give_the_padded_logits(tmp_path: Path) -> None:
    model = randomised(lm_tokens_model(twin("gemma2"), tmp_path), 3)
    seqs = [s.numpy() for s in sequences(5)]
    padded_batch = dict(zip(("input_ids", "attention_mask"), pad(seqs, 0, "right"), strict=True))
    with torch.no_grad():
        a = model(**model_inputs(padded_batch))
        b = model(**model_inputs(pack(seqs, 24)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

"""LightningModules on tiny twins: distillation with a teacher store, swap TTA metrics, trained-only
checkpoints, ``init_from``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from arena.data import Budget, Teacher, Template
from arena.data.schema import DataError
from arena.data.swap import swap_probs
from arena.data.synthetic import make_synthetic
from arena.data.teachers import load_teachers, pin_teachers
from arena.lit import ClassifierModule, DistillModule, PreferenceDataModule
from arena.losses import DistillLoss
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.checkpoint import read_trainable, save_checkpoint

SPEC = BackboneSpec(
    name="tiny_llama",
    kind="decoder",
    arch=TINY_ARCH["llama"],
    random_init=True,
    pad_token="eos",
    lora_targets=("q_proj", "v_proj"),
)


def teacher_file(df: pd.DataFrame, path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, len(df))
    pd.DataFrame({"id": df["id"], "prob_model_a": p, "prob_model_b": 1 - p}).to_parquet(path)
    return str(path)


@pytest.fixture
def setup(tmp_path: Path):
    tok = load_tokenizer(SPEC, tmp_path)
    df = make_synthetic(96, seed=7)
    files = [teacher_file(df, tmp_path / f"t{i}.parquet", i) for i in range(2)]
    return tok, df, files


def make_dm(tok, tmp_path: Path, teachers=()) -> PreferenceDataModule:
    return PreferenceDataModule(
        tok,
        Template(),
        synthetic={"n": 96, "seed": 7},
        fold=0,
        batch_size=8,
        budget=Budget(max_length=96, min_field_tokens=4),
        teachers=teachers,
        cache_dir=str(tmp_path),
        swap="both",
    )


def module(cls=ClassifierModule, tmp_path: Path = Path("."), **kw) -> ClassifierModule:
    factory = partial(
        build_preference_model,
        SPEC,
        n_classes=2,
        cache_dir=tmp_path,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )
    return cls(factory, partial(torch.optim.AdamW, lr=1e-3), n_classes=2, **kw)


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_model_summary=False,
        **kw,
    )


def test_teacher_store_validates(setup, tmp_path: Path) -> None:
    _, df, files = setup
    probs = load_teachers([Teacher("t0", [files[0]])], df["id"].tolist(), 2)
    assert probs.shape == (96, 1, 2) and np.allclose(probs.sum(-1), 1)
    short = tmp_path / "short.parquet"
    pd.read_parquet(files[0]).iloc[:90].to_parquet(short)
    with pytest.raises(DataError, match="6 of 96 missing"):
        load_teachers([Teacher("t", [str(short)])], df["id"].tolist(), 2)
    with pytest.raises(DataError, match="appears"):
        load_teachers([Teacher("t", [files[0], files[0]])], df["id"].tolist(), 2)
    with pytest.raises(DataError, match="no file matches"):
        load_teachers([Teacher("t", [str(tmp_path / "none*.parquet")])], ["x"], 2)
    bad = pd.read_parquet(files[0]).assign(prob_model_a=0.9, prob_model_b=0.3)
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="summing to 1"):
        load_teachers([Teacher("t", [str(tmp_path / "bad.parquet")])], df["id"].tolist(), 2)


def test_swapped_rows_carry_swapped_teachers(setup, tmp_path: Path) -> None:
    tok, _, files = setup
    dm = make_dm(tok, tmp_path, [Teacher("a", [files[0]]), Teacher("b", [files[1]])])
    dm.setup("fit")
    n = dm.train_set.n_rows
    plain, swapped = dm.train_set[3], dm.train_set[n + 3]
    assert np.allclose(swapped["teachers"], plain["teachers"][:, ::-1])
    assert swapped["label"] == 1 - plain["label"]


def test_distill_module_trains_on_teachers(setup, tmp_path: Path) -> None:
    tok, _, files = setup
    dm = make_dm(tok, tmp_path, [Teacher("a", [files[0]]), Teacher("b", [files[1]])])
    student = module(DistillModule, tmp_path, loss=DistillLoss(n_teachers=2, temperature=2.0))
    tr = trainer(tmp_path, limit_train_batches=3)
    tr.fit(student, datamodule=dm)
    logged = tr.callback_metrics
    for key in ("train/kl/0", "train/cos/1", "train/ce", "val/acc", "val/swap_consistency"):
        assert key in logged, key
    assert torch.isfinite(logged["train/total"])


class Scripted(torch.nn.Module):
    """Stands in for a PreferenceModel: logits fixed per sequence, chosen by the test."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.head = logits, torch.nn.Linear(1, 1)

    def forward(self, input_ids, attention_mask, features=None):
        return self.logits


def test_validation_reports_plain_tta_and_swap_consistency() -> None:
    # rows 0-1 as read, rows 2-3 the same pairs swapped: row 0's model agrees with itself across
    # orders (A wins either way), row 1's prefers whatever stands first (position bias)
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.7, 0.3]]))
    clf = ClassifierModule(lambda: None, partial(torch.optim.AdamW), n_classes=2)
    clf.model = Scripted(logits)
    batch = {
        "input_ids": torch.zeros(4, 3, dtype=torch.long),
        "attention_mask": torch.ones(4, 3),
        "label": torch.tensor([0, 1]),
        "target": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "index": torch.tensor([0, 1]),
    }
    clf.validation_step(batch, 0)
    assert clf.swap_consistency.compute() == 0.5
    assert clf.val_metrics["acc"].compute() == 0.5  # row 1 predicted A (0.6), truth B
    tta = clf.val_probs_tta.compute()
    assert torch.allclose(tta, torch.tensor([[0.75, 0.25], [0.45, 0.55]]))
    assert clf.val_metrics_tta["acc"].compute() == 1.0  # TTA removes row 1's position bias
    assert torch.equal(swap_probs(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([[2.0, 1.0, 3.0]]))


def test_lightning_checkpoint_holds_only_trained_weights(setup, tmp_path: Path) -> None:
    tok, _, _ = setup
    dm = make_dm(tok, tmp_path)
    clf = module(tmp_path=tmp_path)
    tr = trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    tr.fit(clf, datamodule=dm)
    tr.save_checkpoint(tmp_path / "x.ckpt")
    state = torch.load(tmp_path / "x.ckpt", weights_only=False)["state_dict"]
    model_keys = [k for k in state if k.startswith("model.")]
    assert model_keys and all("lora_" in k or ".head." in k for k in model_keys)


def test_init_from_starts_from_saved_weights(setup, tmp_path: Path) -> None:
    tok, _, _ = setup
    first = module(tmp_path=tmp_path)
    first.configure_model()
    with torch.no_grad():
        for p in first.model.head.parameters():
            p.add_(1.0)
    save_checkpoint(
        first.model, tok, {"backbone": SPEC.to_dict(), "model": {"n_classes": 2}}, tmp_path / "ckpt"
    )
    second = module(tmp_path=tmp_path, init_from=str(tmp_path / "ckpt"))
    second.configure_model()
    saved = read_trainable(tmp_path / "ckpt")
    got = dict(second.model.named_parameters())
    for name, value in saved.items():
        assert torch.equal(got[name].detach(), value), name


@pytest.mark.parametrize(("features", "width", "projection"), [(True, 56, None), ("seed", 57, 8)])
def test_fusion_head_trains_on_engineered_features(
    features: str | bool, width: int, projection: int | None, tmp_path: Path
) -> None:
    tok = load_tokenizer(SPEC, tmp_path)
    dm = PreferenceDataModule(
        tok,
        Template(),
        synthetic={"n": 64, "seed": 3},
        batch_size=8,
        features=features,
        budget=Budget(max_length=96, min_field_tokens=4),
        cache_dir=str(tmp_path),
    )
    factory = partial(
        build_preference_model,
        SPEC,
        n_classes=2,
        cache_dir=tmp_path,
        head="fusion",
        n_features=width,
        feature_projection=projection,
    )
    feature_lr = 5e-4 if projection else None
    clf = ClassifierModule(
        factory, partial(torch.optim.AdamW, lr=1e-3), n_classes=2, feature_lr=feature_lr
    )
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=1).fit(clf, datamodule=dm)
    assert dm.normalizer is not None  # fitted on the training rows, saved with checkpoints
    assert len(dm.normalizer.names) == width and dm.train_set[0]["features"].shape == (width,)
    assert torch.isfinite(clf.trainer.callback_metrics["val/log_loss"])


def test_backbone_feature_layers_and_head_train_at_their_own_rates(tmp_path: Path) -> None:
    factory = partial(build_preference_model, SPEC, n_classes=2, cache_dir=tmp_path, head="fusion",
                      n_features=59, feature_projection=8, lora={"r": 2, "alpha": 4})  # fmt: skip
    adamw = partial(torch.optim.AdamW, lr=1e-4)
    clf = ClassifierModule(factory, adamw, n_classes=2, head_lr=1e-3, feature_lr=5e-4)
    clf.configure_model()
    groups = {g["name"]: g for g in clf.configure_optimizers().param_groups}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "backbone": 1e-4, "features": 5e-4, "head": 1e-3,
    }  # fmt: skip
    model = clf.model

    def ids(params) -> set[int]:
        return {id(p) for p in params}

    assert ids(groups["features"]["params"]) == ids(model.head.project.parameters())
    assert ids(groups["head"]["params"]) == ids(model.head.net.parameters())
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and ids(groups["backbone"]["params"]) == ids(lora)
    every = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters() if p.requires_grad)

    two = ClassifierModule(factory, adamw, n_classes=2, head_lr=1e-3)  # projection: head's rate
    two.configure_model()
    groups = {g["name"]: g for g in two.configure_optimizers().param_groups}
    assert list(groups) == ["backbone", "head"] and groups["head"]["lr"] == 1e-3
    assert ids(two.model.head.project.parameters()) <= ids(groups["head"]["params"])

    plain = partial(build_preference_model, SPEC, n_classes=2, cache_dir=tmp_path)
    refused = ClassifierModule(plain, adamw, n_classes=2, feature_lr=5e-4)
    refused.configure_model()
    with pytest.raises(ValueError, match="feature_projection"):
        refused.configure_optimizers()


def test_fused_adamw_clips_under_bf16_mixed(setup, tmp_path: Path) -> None:
    """Lightning refuses to clip for fused AdamW under any mixed precision; with bf16 there is no
    scaler, so the module clips itself and every step's gradient norm is capped."""
    tok, _, _ = setup
    norms: list[float] = []

    class Recorded(ClassifierModule):
        def configure_gradient_clipping(self, optimizer, **kw) -> None:
            super().configure_gradient_clipping(optimizer, **kw)
            grads = [p.grad.norm() for p in self.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))

    student = Recorded(
        partial(build_preference_model, SPEC, n_classes=2, cache_dir=tmp_path),
        partial(torch.optim.AdamW, lr=1e-3, fused=True),
        n_classes=2,
    )
    fit = trainer(tmp_path, precision="bf16-mixed", gradient_clip_val=1e-3, max_steps=3)
    fit.fit(student, datamodule=make_dm(tok, tmp_path))
    assert len(norms) == 3 and max(norms) <= 1e-3 * (1 + 1e-3)


def test_small_updates_survive_in_fp32_trained_weights(setup, tmp_path: Path) -> None:
    """Over a bf16 base, LoRA and head train in fp32 under bf16-mixed: a few steps at the
    teachers' lr 5e-5 move every LoRA weight, by amounts that bf16 storage (8 bits of mantissa:
    a step of 2^-10 near 0.125) would round away. bf16-true, which casts them, is refused."""
    tok, _, _ = setup
    spec = BackboneSpec(**{**SPEC.to_dict(), "dtype": "bfloat16"})
    factory = partial(build_preference_model, spec, n_classes=2, cache_dir=tmp_path,
                      lora={"r": 4, "alpha": 8, "dropout": 0.0})  # fmt: skip
    optimizer = partial(torch.optim.AdamW, lr=5e-5, weight_decay=0.0)
    clf = ClassifierModule(factory, optimizer, n_classes=2)
    clf.configure_model()
    assert {p.dtype for p in clf.model.parameters() if not p.requires_grad} == {torch.bfloat16}
    lora = {n: p.detach().clone() for n, p in clf.model.named_parameters() if "lora_A" in n}
    trainer(tmp_path, precision="bf16-mixed", max_steps=3).fit(
        clf, datamodule=make_dm(tok, tmp_path)
    )
    params = dict(clf.model.named_parameters())
    assert {p.dtype for p in params.values() if p.requires_grad} == {torch.float32}
    before = torch.cat([v.flatten() for v in lora.values()])
    after = torch.cat([params[n].detach().flatten() for n in lora])
    assert (after != before).float().mean() > 0.99  # fp32 keeps them
    kept_in_bf16 = (after.bfloat16() != before.bfloat16()).float().mean()
    assert kept_in_bf16 < 0.2  # bf16 storage would lose most of them

    with pytest.raises(ValueError, match="bf16-mixed"):
        refused = ClassifierModule(factory, optimizer, n_classes=2)
        trainer(tmp_path, precision="bf16-true", max_steps=1).fit(refused, make_dm(tok, tmp_path))


def test_a_full_fine_tune_of_a_bf16_backbone_trains_fp32_weights(tmp_path: Path) -> None:
    spec = BackboneSpec(**{**SPEC.to_dict(), "dtype": "bfloat16"})
    factory = partial(build_preference_model, spec, n_classes=2, cache_dir=tmp_path)
    clf = ClassifierModule(factory, partial(torch.optim.AdamW), n_classes=2)
    clf.configure_model()
    assert {p.dtype for p in clf.model.parameters()} == {torch.float32}


def test_teacher_runs_read_the_newest_sweep_and_resumes_keep_theirs(setup, tmp_path: Path) -> None:
    _, df, files = setup
    ids = df["id"].tolist()
    store = tmp_path / "teacher_x"
    for k, name in enumerate(["multirun_2026-12-01_09-00-00", "multirun_2026-12-02_08-00-00"]):
        for fold in range(2):
            (store / name / f"{fold}_fold{fold}").mkdir(parents=True)
            half = pd.read_parquet(files[k]).iloc[fold * 48 : (fold + 1) * 48]
            half.to_parquet(store / name / f"{fold}_fold{fold}" / "oof.parquet")
    teacher = Teacher("x", runs=str(store / "multirun_*"))
    record = tmp_path / "run" / "teachers.json"
    (pinned,) = pin_teachers([teacher], record, resume=False)
    assert all("2026-12-02" in f for f in pinned.files) and len(pinned.files) == 2
    newest = load_teachers([pinned], ids, 2)[:, 0]
    assert np.allclose(newest, load_teachers([Teacher("t", [files[1]])], ids, 2)[:, 0])

    later = store / "multirun_2026-12-03_07-00-00" / "0_fold0"  # a rerun of one fold
    later.mkdir(parents=True)
    pd.read_parquet(files[0]).iloc[:48].to_parquet(later / "oof.parquet")
    (resumed,) = pin_teachers([teacher], record, resume=True)
    assert resumed.files == pinned.files  # a resumed run reads what its start read
    (fresh,) = pin_teachers([teacher], record, resume=False)
    with pytest.raises(DataError, match="48 of 96 missing .* did every fold run finish"):
        load_teachers([fresh], ids, 2)
    with pytest.raises(ValueError, match="pins teachers"):
        pin_teachers([Teacher("y", runs=teacher.runs)], record, resume=True)

    sweep = store / "multirun_2026-12-04_07-00-00"  # a sweep over the lr as well: 2 runs a fold
    for run in ("0_fold0", "1_fold0"):
        (sweep / run).mkdir(parents=True)
        pd.read_parquet(files[0]).to_parquet(sweep / run / "oof.parquet")
    (swept,) = pin_teachers([teacher], record, resume=False)
    with pytest.raises(DataError, match="two runs of one fold"):
        load_teachers([swept], ids, 2)
    with pytest.raises(DataError, match="none found"):
        pin_teachers([Teacher("z", runs=str(tmp_path / "absent_*"))], record, resume=False)

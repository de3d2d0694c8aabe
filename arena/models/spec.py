"""What a checkpoint holds: one typed, versioned description, written by train and merge and read by
every loader (:func:`arena.models.checkpoint.load_checkpoint`, the predictor, merge).

A checkpoint's ``config.yaml`` is :meth:`CheckpointSpec.to_dict`::

    schema_version: 2
    backbone:  BackboneSpec fields (a merged model's ``path`` is relative: ``backbone``)
    model:     ModelOptions fields: the build_preference_model keywords
    template:  Template fields (how pairs were formatted)
    budget:    Budget fields (the token budget it was trained with)
    feature_normalizer: feature standardisation of a model that reads features, else null
    merge:     {method, sources, n_folds} for a merged model, else null
    run:       the resolved run config, for provenance only (no loader reads it)

Version 1 (no ``schema_version``; ``data.budget`` and ``data.n_classes`` beside the resolved run
config) still loads: :meth:`CheckpointSpec.from_dict` reads it into the same type.

    spec = CheckpointSpec.from_dict(yaml.safe_load(path.read_text()), source=path)
    spec.check_max_length(1024, position_limit=512)   # ValueError naming the limit
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.data.format import Budget, Template
from arena.models.backbone import BackboneSpec
from arena.models.heads import HEAD_KINDS
from arena.models.lm_head import LM_TOKENS

SCHEMA_VERSION = 2
_SECTIONS = ("backbone", "model", "template", "budget", "feature_normalizer", "merge", "run")


@dataclass(frozen=True)
class ModelOptions:
    """The model built on the backbone (the keywords of ``build_preference_model``).

    Attributes:
        architecture: ``joint`` (one sequence per pair) or ``siamese`` (one per side).
        n_classes: 2 (A/B) or 3 (A/B/tie): what the head outputs.
        head: ``linear``, ``mlp``, ``fusion`` or ``lm_tokens`` (the backbone's LM head).
        n_features: width of the engineered features a fusion head reads (0: none).
        pooling: ``last``, ``mean``, ``cls`` or None (the backbone kind's default).
        lora: ``{r, alpha, dropout[, targets]}``, or None for a full fine-tune / merged model.
        quantization: how the frozen backbone loads: ``none``, ``8bit``, ``4bit``.
        quant_storage: 4-bit storage dtype (FSDP-QLoRA) or None.
        mlp_hidden, head_dropout: the head's width and dropout.
        feature_projection: width a fusion head projects its features to (then L2-normalised),
            or None.
    """

    n_classes: int
    architecture: str = "joint"
    head: str = "linear"
    n_features: int = 0
    pooling: str | None = None
    lora: dict[str, Any] | None = None
    quantization: str = "none"
    quant_storage: str | None = None
    mlp_hidden: int = 256
    head_dropout: float = 0.1
    feature_projection: int | None = None

    def __post_init__(self) -> None:
        if self.n_classes not in (2, 3):
            raise ValueError(f"model.n_classes must be 2 or 3, got {self.n_classes}")
        if self.head not in (*HEAD_KINDS, LM_TOKENS):
            raise ValueError(
                f"model.head must be one of {(*HEAD_KINDS, LM_TOKENS)}, got {self.head!r}"
            )
        if self.architecture not in ("joint", "siamese"):
            raise ValueError(f"model.architecture must be joint or siamese: {self.architecture!r}")
        if self.quantization not in ("none", "8bit", "4bit"):
            raise ValueError(f"model.quantization must be none, 8bit or 4bit: {self.quantization}")

    def kwargs(self) -> dict[str, Any]:
        """Keywords of ``build_preference_model``."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckpointSpec:
    """Everything a loader needs to rebuild a checkpoint's model and feed it as trained.

    Attributes:
        backbone: the backbone to rebuild.
        model: what was built on it.
        template, budget: how pairs were formatted and truncated in training.
        feature_normalizer: ``FeatureNormalizer.to_dict()`` when the model reads features.
        merge: ``{method, sources, n_folds}`` when the checkpoint is merged folds.
        run: the resolved run config (provenance; loaders never read it).
        version: the schema version it was written with.
    """

    backbone: BackboneSpec
    model: ModelOptions
    template: Template = field(default_factory=Template)
    budget: Budget = field(default_factory=Budget)
    feature_normalizer: dict[str, Any] | None = None
    merge: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    version: int = SCHEMA_VERSION

    @property
    def n_classes(self) -> int:
        return self.model.n_classes

    def to_dict(self) -> dict[str, Any]:
        """The ``config.yaml`` content: plain YAML types, ``schema_version`` first."""
        return {
            "schema_version": SCHEMA_VERSION,
            "backbone": self.backbone.to_dict(),
            "model": _plain(dataclasses.asdict(self.model)),
            "template": dataclasses.asdict(self.template),
            "budget": _plain(dataclasses.asdict(self.budget)),
            "feature_normalizer": self.feature_normalizer,
            "merge": self.merge,
            "run": self.run,
        }

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], source: str | Path = "<config>"
    ) -> CheckpointSpec:
        """Read a ``config.yaml`` of schema version 1 or 2.

        Raises:
            ValueError: a newer schema, a missing section or a bad value; names ``source``.
        """
        try:
            return cls._from_dict(dict(values))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: not a checkpoint arena can load: {err}") from err

    @classmethod
    def _from_dict(cls, values: dict[str, Any]) -> CheckpointSpec:
        version = int(values.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} was written by a newer arena (this one reads up to "
                f"{SCHEMA_VERSION}): upgrade arena to load it"
            )
        if version == 1:  # the resolved run config with its formatting under data
            data = values.get("data") or {}
            values = {
                "backbone": values["backbone"],
                "model": {"n_classes": data.get("n_classes"), **values["model"]},
                "template": values.get("template") or {},
                "budget": data.get("budget") or {},
                "feature_normalizer": values.get("feature_normalizer"),
                "merge": values.get("merge"),
                "run": values.get("run"),
            }
        unknown = sorted(set(values) - {"schema_version", *_SECTIONS})
        if unknown:
            raise ValueError(f"unknown sections {unknown}")
        budget = _public(values.get("budget") or {})
        if "split" in budget:
            budget["split"] = tuple(budget["split"])
        return cls(
            backbone=BackboneSpec.from_dict(values["backbone"]),
            model=ModelOptions(**_public(values["model"])),
            template=Template(**_public(values.get("template") or {})),
            budget=Budget(**budget),
            feature_normalizer=values.get("feature_normalizer"),
            merge=values.get("merge"),
            run=values.get("run"),
            version=version,
        )

    def check_max_length(self, max_length: int | None, position_limit: int | None) -> None:
        """Refuse scoring with more tokens per sequence than the backbone has positions.

        Raises:
            ValueError: ``max_length`` exceeds ``position_limit`` or is not positive.
        """
        if max_length is None:
            return
        if max_length <= 0:
            raise ValueError(f"max_length={max_length} must be a positive number of tokens")
        if position_limit is not None and max_length > position_limit:
            raise ValueError(
                f"max_length={max_length} exceeds what backbone {self.backbone.name!r} can read "
                f"({position_limit} positions); use max_length<={position_limit} "
                f"(it was trained with {self.budget.max_length})"
            )

    def replace(self, **changes: Any) -> CheckpointSpec:
        """A copy with ``changes`` (see :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


def _public(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section without Hydra's ``_target_``-style keys."""
    return {str(k): v for k, v in section.items() if not str(k).startswith("_")}


def _plain(value: Any) -> Any:
    """Tuples as lists, for YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

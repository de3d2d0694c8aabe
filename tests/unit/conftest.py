"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from arena.models import TINY_ARCH, BackboneSpec, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    spec = BackboneSpec(
        name="tiny_qwen2", kind="decoder", arch=TINY_ARCH["qwen2"], random_init=True
    )
    return load_tokenizer(spec, tmp_path_factory.mktemp("tok"))

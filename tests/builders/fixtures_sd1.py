"""Pytest fixtures for the SD1 refiner, KL decoder and CLIP tests (auto-loaded by the root conftest)."""

from __future__ import annotations

import pytest

from builders.sd1 import tiny_clip_text_model, write_tiny_clip_tokenizer


@pytest.fixture(scope="session")
def tiny_clip_tokenizer_dir(tmp_path_factory) -> str:
    """A folder with the tiny vocab.json + merges.txt ('cat', 'dog', 'red' are single tokens)."""
    return write_tiny_clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


@pytest.fixture(scope="session")
def tiny_clip_tokenizer(tiny_clip_tokenizer_dir):
    from tinybreaker_ext.models.clip_tokenizer import load_clip_tokenizer

    return load_clip_tokenizer(tiny_clip_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_clip_model():
    """A random transformers CLIPTextModel (hidden 32, 2 layers, 2 heads) over the tiny tokenizer's vocabulary."""
    return tiny_clip_text_model(hidden=32, layers=2, heads=2, seed=0)

"""Pytest fixtures of the T5 area (auto-loaded by the root conftest)."""

from __future__ import annotations

import pytest

from builders.t5 import train_tiny_t5_tokenizer


@pytest.fixture(scope="session")
def t5_tokenizer_dir(tmp_path_factory) -> str:
    """A tiny trained T5-style tokenizer folder (tokenizer.json + spiece.model + configs), built once per session."""
    return train_tiny_t5_tokenizer(tmp_path_factory.mktemp("t5_tokenizer"))


@pytest.fixture(scope="session")
def t5_tokenizer(t5_tokenizer_dir):
    from tinybreaker_ext.models.t5_tokenizer import T5PromptTokenizer

    return T5PromptTokenizer.from_dir(t5_tokenizer_dir)

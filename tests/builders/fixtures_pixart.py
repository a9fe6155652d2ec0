"""Pytest fixtures for the PixArt area: tiny transformer state dicts and files in both key layouts."""

from __future__ import annotations

import pytest

from builders.common import save_safetensors
from builders.pixart import pixart_state_dict


@pytest.fixture
def tiny_pixart_sd():
    """Native-layout tiny PixArt-Sigma (hidden 144 = 2 heads × 72, depth 2, caption 32)."""
    return pixart_state_dict()


@pytest.fixture
def tiny_pixart_diffusers_sd():
    """The same weights as ``tiny_pixart_sd`` under diffusers names."""
    return pixart_state_dict(layout="diffusers")


@pytest.fixture
def tiny_pixart_files(tmp_path):
    """(native_path, diffusers_path) safetensors files holding the same tiny weights."""
    native = save_safetensors(pixart_state_dict(include_y_embedding=True), tmp_path / "pixart_native.safetensors")
    diffusers = save_safetensors(pixart_state_dict(layout="diffusers"), tmp_path / "pixart_diffusers.safetensors")
    return native, diffusers

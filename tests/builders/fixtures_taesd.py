"""Pytest fixtures for the tiny VAE / transcoder / tiling tests (auto-loaded by the root conftest)."""

from __future__ import annotations

import pytest
import torch

from builders.taesd import taesd_decoder_state_dict, taesd_encoder_state_dict, transcoder_state_dict


@pytest.fixture(scope="session")
def taesd_encoder_sd() -> dict[str, torch.Tensor]:
    """Prefix-less random TAESD encoder half (full size, seed 0)."""
    return taesd_encoder_state_dict(seed=0)


@pytest.fixture(scope="session")
def taesd_decoder_sd() -> dict[str, torch.Tensor]:
    """Prefix-less random TAESD decoder half (full size, seed 0)."""
    return taesd_decoder_state_dict(seed=0)


@pytest.fixture(scope="session")
def transcoder_sd() -> dict[str, torch.Tensor]:
    """Random transcoder in the TinyBreaker naming (`transd.`/`transe.`/`in_emu.`/`out_emu.`), fp16, seed 0."""
    return transcoder_state_dict(seed=0, naming="new")

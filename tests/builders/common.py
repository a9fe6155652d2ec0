"""Shared helpers for the tiny-file builders."""

from __future__ import annotations

import os
from typing import Mapping

import torch
from safetensors.torch import save_file


def random_tensor(shape, dtype=torch.float32, generator: torch.Generator | None = None, std: float = 0.02):
    """A random tensor; 1-d 'weight' vectors of norms are better built with ``ones_like`` by the caller."""
    if len(shape) == 0:
        return torch.tensor(1.0, dtype=dtype)
    return (torch.randn(*shape, generator=generator) * std).to(dtype)


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    save_file(tensors, path, metadata=dict(metadata) if metadata else None)
    return path


def prefixed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state_dict.items()}

"""Sinusoidal embeddings with the float precision of the TinyBreaker reference
(docs/numerics.md "Timestep and position embeddings"): hand-written because diffusers' ``get_timestep_embedding``
computes the frequencies as ``exp(-ln(10000)·i/half)``, ~6e-5 away from the reference's ``1 / 10000^(i/half)``."""

from __future__ import annotations

import torch

MAX_PERIOD = 10000


def timestep_sinusoid(timesteps: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float32 ``[cos(t·f_i), sin(t·f_i)]`` on the timesteps' device."""
    if dim % 2:
        raise ValueError(f"timestep embedding size must be even, got {dim}")
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    frequencies = 1.0 / (MAX_PERIOD ** exponents)
    angles = timesteps.reshape(-1).to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """[M] positions -> [M, dim] float64 ``[sin(p·ω_k), cos(p·ω_k)]`` with ``ω_k = 1 / 10000^(k/(dim/2))``."""
    half = dim // 2
    omega = 1.0 / (MAX_PERIOD ** (torch.arange(half, dtype=torch.float64) / half))
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def pixart_position_embedding(height: int, width: int, dim: int, base_size: int,
                              pe_interpolation: float) -> torch.Tensor:
    """[height·width, dim] float64 2-D sin-cos embedding of a token grid, row-major, ``[E(x), E(y)]``; positions
    span ``[0, base_size/pe_interpolation)`` on each axis whatever its length, computed in float32."""
    if dim % 4:
        raise ValueError(f"position embedding size must be a multiple of 4, got {dim}")
    grid_y = torch.arange(height, dtype=torch.float32) / (height / base_size) / pe_interpolation
    grid_x = torch.arange(width, dtype=torch.float32) / (width / base_size) / pe_interpolation
    pos_y, pos_x = torch.meshgrid(grid_y, grid_x, indexing="ij")  # [height, width] each
    return torch.cat([sincos_1d(pos_x, dim // 2), sincos_1d(pos_y, dim // 2)], dim=1)

"""Per-stage noise and the noised start point (docs/numerics.md "Noise and seeds")."""

from __future__ import annotations

import math

import torch

MAX_DENOISE_REL_TOL = 1e-5


def stage_noise(shape, seed: int) -> torch.Tensor:
    """Start noise over ``shape`` from a CPU generator seeded with ``seed`` (docs/numerics.md "Noise and seeds")."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device="cpu")


def per_image_noise(shape, seeds, device) -> torch.Tensor:
    """A batch's noise on ``device``: image k's is the `stage_noise` of one image seeded with ``seeds[k]``."""
    single = (1,) + tuple(shape[1:])
    return torch.cat([stage_noise(single, seed) for seed in seeds]).to(device)


def is_max_denoise(sigma0, sigma_max) -> bool:
    """Whether a stage starts from pure noise: σ0 ≈ σ_max (relative tolerance 1e-5) or above it."""
    sigma0, sigma_max = float(sigma0), float(sigma_max)
    return math.isclose(sigma_max, sigma0, rel_tol=MAX_DENOISE_REL_TOL) or sigma0 > sigma_max


def noised_start(latent: torch.Tensor, noise: torch.Tensor, sigma0, sigma_max) -> torch.Tensor:
    """The start point from a model-space ``latent``: ``latent + noise·σ0``, or ``latent + noise·sqrt(1 + σ0²)`` from
    pure noise; σ0 is rounded to float32 first, as the reference's sigma tensors are."""
    sigma = torch.as_tensor(sigma0, dtype=torch.float32).to(noise.device)
    if is_max_denoise(sigma, sigma_max):
        scaled = noise * torch.sqrt(1.0 + sigma ** 2.0)
    else:
        scaled = noise * sigma
    return scaled + latent.to(device=noise.device, dtype=noise.dtype)

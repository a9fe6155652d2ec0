"""One stage sampled the way the reference samples it (ComfyUI ``sample_custom``): the base, the refine (our model or
a WebUI host's through its CFG denoiser) and each Tiny Upscaler tile step."""

from __future__ import annotations

from typing import Sequence

import torch

from .noise import noised_start, per_image_noise
from .samplers import Denoiser, get_sampler


def sample_stage(denoiser: Denoiser, latent: torch.Tensor, sigmas: torch.Tensor, *, sampler: str,
                 seeds: Sequence[int], sigma_max, add_noise: bool = True, callback=None) -> torch.Tensor:
    """The model-space ``latent`` [B, …] sampled over ``sigmas`` (float32, on the latent's device); fewer than two
    sigmas leave it as it is. Image k's noise comes from ``seeds[k]`` alone (docs/numerics.md "Noise and seeds");
    ``add_noise=False`` starts from the latent itself (the upscaler's steps after the first)."""
    if len(sigmas) < 2:
        return latent
    if len(seeds) != latent.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {latent.shape[0]}")
    sample = get_sampler(sampler)
    x = latent.float()
    if add_noise:
        x = noised_start(x, per_image_noise(latent.shape, seeds, latent.device), sigmas[0], sigma_max)
    return sample(denoiser, x, sigmas.to(latent.device), seeds=[int(seed) for seed in seeds],
                  callback=callback).float()

"""Small helpers shared by the samplers: sigma placement and progress reporting."""

from __future__ import annotations

from typing import Callable, Optional

import torch

ProgressCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def prepare_sigmas(sigmas, x: torch.Tensor) -> torch.Tensor:
    """Sigmas on ``x``'s device, float32 for float32/half latents (as the reference) or float64 for float64 ones."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.as_tensor(sigmas).to(device=x.device, dtype=dtype)


def report(callback: Optional[ProgressCallback], step: int, total: int, x: torch.Tensor,
           denoised: torch.Tensor) -> None:
    """Tell the caller one step is done; whatever it raises (e.g. `Cancelled`) propagates and stops sampling."""
    if callback is not None:
        callback(step, total, x, denoised)

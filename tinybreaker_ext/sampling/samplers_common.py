"""Helpers shared by the samplers. No step reads a device tensor back to the host (on a GPU each read would stall
the stream): every branch is decided from the host copy of the sigmas that `prepare_sigmas` makes once."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

ProgressCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def prepare_sigmas(sigmas, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sigmas on ``x``'s device and on the host (float32 for float32/half latents, as the reference, float64 for
    float64 ones). The host copy is the only read from the device (none when the caller's sigmas are on the CPU)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    host = torch.as_tensor(sigmas).to(device="cpu", dtype=dtype)
    return host.to(x.device), host


def noise_streams(x: torch.Tensor, seed: Optional[int], seeds: Optional[Sequence[int]]) -> tuple[list[int], tuple]:
    """The noise streams' seeds and the shape each draws: ``[seed]`` over the whole batch, or one per image."""
    if (seed is None) == (seeds is None):
        raise ValueError("give either seed (one noise stream for the batch) or seeds (one per image)")
    if seeds is None:
        return [int(seed)], tuple(x.shape)
    if len(seeds) != x.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {x.shape[0]} images")
    return [int(each) for each in seeds], (1,) + tuple(x.shape[1:])


def to_device(parts: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Noise made on the host, one part per stream, as one tensor on the compute device without stalling it: a CUDA
    copy goes through pinned memory asynchronously (a plain copy from pageable memory waits for the stream)."""
    tensor = parts[0] if len(parts) == 1 else torch.cat(parts)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def report(callback: Optional[ProgressCallback], step: int, total: int, x: torch.Tensor,
           denoised: torch.Tensor) -> None:
    """Tell the caller one step is done; whatever it raises (e.g. `Cancelled`) propagates and stops sampling."""
    if callback is not None:
        callback(step, total, x, denoised)

"""Denoiser wrappers: an eps-prediction network as a sigma-space denoiser, and classifier-free guidance (spec §2.5, §5.4).

Contract used throughout: a *model function* is ``model_fn(x, sigma[B], context) -> denoised x0`` (an `EpsDenoiser`
around a network is one); a *denoiser* is ``denoiser(x, sigma[B]) -> denoised x0`` (what the samplers call).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from tinybreaker_ext.sampling.schedules import as_schedule

ModelFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Cond and uncond of different token lengths share one batch only while repeating both to their LCM length costs at
# most 4x the shorter one (spec §11.2); repeating tokens leaves attention results unchanged, zero-padding would not.
MAX_LCM_REPEAT = 4


class EpsDenoiser:
    """Wraps ``eps_fn(x_in, timestep, *extra) -> eps`` of a discrete-time VP model.

    The network sees ``x / sqrt(σ² + 1)`` and the nearest integer timestep (as a float tensor); the result is
    ``x − σ·eps``. Extra positional/keyword arguments (e.g. the text context) are passed through to ``eps_fn``.
    """

    def __init__(self, eps_fn: Callable[..., torch.Tensor], model_sigmas):
        self.eps_fn = eps_fn
        self.schedule = as_schedule(model_sigmas)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        per_sample = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        x_in = x / (per_sample ** 2 + 1.0) ** 0.5
        timestep = self.schedule.timestep(sigma).float()
        eps = self.eps_fn(x_in, timestep, *args, **kwargs).to(x.dtype)
        return x - eps * per_sample


def _repeat_to_batch(context: torch.Tensor, batch: int) -> torch.Tensor:
    if context.shape[0] == batch:
        return context
    if batch % context.shape[0]:
        raise ValueError(f"context batch {context.shape[0]} does not divide the latent batch {batch}")
    return context.repeat((batch // context.shape[0],) + (1,) * (context.ndim - 1))


def _repeat_tokens(context: torch.Tensor, length: int) -> torch.Tensor:
    if context.shape[1] == length:
        return context
    return context.repeat((1, length // context.shape[1]) + (1,) * (context.ndim - 2))


def stack_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    """Per-image contexts ``[1, tokens_k, width]`` as one batch: each repeated to the common LCM length, which leaves
    an unmasked cross-attention's result unchanged."""
    length = math.lcm(*(context.shape[1] for context in contexts))
    return torch.cat([_repeat_tokens(context, length) for context in contexts])


def can_batch_contexts(cond: torch.Tensor, uncond: torch.Tensor) -> bool:
    """Whether cond and uncond can share one model call (same width, LCM repetition at most 4x)."""
    if cond.shape[2:] != uncond.shape[2:]:
        return False
    shortest = min(cond.shape[1], uncond.shape[1])
    return math.lcm(cond.shape[1], uncond.shape[1]) // shortest <= MAX_LCM_REPEAT


class CFGDenoiser:
    """Classifier-free guidance ``uncond + cfg·(cond − uncond)`` on denoised outputs (as the reference).

    ``cond`` and ``uncond`` are contexts ``[1 or B, tokens, width]``; a cfg of (about) 1 skips the uncond pass.
    """

    def __init__(self, model_fn: ModelFunction, cond: torch.Tensor, uncond: torch.Tensor | None, cfg: float):
        self.model_fn = model_fn
        self.cond = cond
        self.uncond = uncond
        self.cfg = float(cfg)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        cond = _repeat_to_batch(self.cond, batch).to(x.device)
        if self.uncond is None or math.isclose(self.cfg, 1.0):
            return self.model_fn(x, sigma, cond) * self.cfg
        uncond = _repeat_to_batch(self.uncond, batch).to(x.device)
        if can_batch_contexts(cond, uncond):
            # One call on [uncond, cond], the order the reference batches them in.
            length = math.lcm(cond.shape[1], uncond.shape[1])
            context = torch.cat([_repeat_tokens(uncond, length), _repeat_tokens(cond, length)])
            uncond_pred, cond_pred = self.model_fn(torch.cat([x, x]), torch.cat([sigma, sigma]), context).chunk(2)
        else:
            uncond_pred = self.model_fn(x, sigma, uncond)
            cond_pred = self.model_fn(x, sigma, cond)
        return uncond_pred + (cond_pred - uncond_pred) * self.cfg

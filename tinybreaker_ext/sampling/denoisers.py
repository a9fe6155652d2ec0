"""Denoiser wrappers: an eps-prediction network as a sigma-space denoiser, and classifier-free guidance
(docs/numerics.md "Eps and CFG denoisers").

Contract used throughout: a *model function* is ``model_fn(x, sigma[B], context) -> denoised x0`` (an `EpsDenoiser`
around a network is one); one whose network can mask padded caption tokens also takes ``context_mask=`` ([B, L]
bool, False on padding). A *denoiser* is ``denoiser(x, sigma[B]) -> denoised x0`` (what the samplers call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from tinybreaker_ext.sampling.schedules import as_schedule

ModelFunction = Callable[..., torch.Tensor]
Contexts = Union[torch.Tensor, Sequence[torch.Tensor]]

# Contexts of different lengths share one call, repeated to their LCM length, while that is at most 4x the shortest
# (docs/numerics.md "Caption length and masking": repetition leaves attention unchanged, unmasked padding would not).
MAX_LCM_REPEAT = 4


class EpsDenoiser:
    """A model function around ``eps_fn(x_in, timestep, *extra) -> eps`` of a discrete-time VP model
    (docs/numerics.md "Eps and CFG denoisers"); extra arguments (context, mask) go through to ``eps_fn``."""

    def __init__(self, eps_fn: Callable[..., torch.Tensor], model_sigmas):
        self.eps_fn = eps_fn
        self.schedule = as_schedule(model_sigmas)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        per_sample = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        x_in = x / (per_sample ** 2 + 1.0) ** 0.5
        timestep = self.schedule.timestep(sigma).float()
        eps = self.eps_fn(x_in, timestep, *args, **kwargs).to(x.dtype)
        return x - eps * per_sample


@dataclass(frozen=True)
class ContextCall:
    """One model call: its batch rows (a slice when consecutive), their contexts and, when zero-padded to a common
    length, the mask of their real tokens (or, with a ``prepare_context``, what it made of both)."""

    rows: slice | torch.Tensor
    context: torch.Tensor
    mask: torch.Tensor | None = None


def plan_context_calls(rows: list[torch.Tensor], *, can_mask: bool) -> list[ContextCall]:
    """Batches per-row contexts (each ``[1, L_i, W]``) into as few model calls as the model allows: repeated to their
    LCM length, else zero-padded and masked, else one call per shape (docs/numerics.md "Caption length and masking")."""
    lengths = [row.shape[1] for row in rows]
    same_width = len({row.shape[2] for row in rows}) == 1
    if same_width and math.lcm(*lengths) // min(lengths) <= MAX_LCM_REPEAT:
        length = math.lcm(*lengths)
        return [ContextCall(slice(0, len(rows)), torch.cat([row.repeat(1, length // row.shape[1], 1) for row in rows]))]
    if can_mask and same_width:
        length = max(lengths)
        context = torch.cat([torch.nn.functional.pad(row, (0, 0, 0, length - row.shape[1])) for row in rows])
        mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).to(context.device)
        return [ContextCall(slice(0, len(rows)), context, mask)]
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(tuple(row.shape[1:]), []).append(index)
    return [ContextCall(_rows_selector(indices, rows[0].device), torch.cat([rows[i] for i in indices]))
            for indices in groups.values()]


def _rows_selector(indices: list[int], device: torch.device) -> slice | torch.Tensor:
    if indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    return torch.tensor(indices).to(device)


def _context_rows(contexts: Contexts, batch: int) -> list[torch.Tensor]:
    """One ``[1, L, W]`` context per image: a tensor's rows repeat to fill the batch (its batch must divide it);
    a sequence gives one context per image, each of its own length."""
    if isinstance(contexts, torch.Tensor):
        if batch % contexts.shape[0]:
            raise ValueError(f"context batch {contexts.shape[0]} does not divide the latent batch {batch}")
        return [contexts[index % contexts.shape[0]][None] for index in range(batch)]
    if len(contexts) != batch:
        raise ValueError(f"got {len(contexts)} contexts for a latent batch of {batch}")
    rows = []
    for context in contexts:
        if context.ndim == 3 and context.shape[0] != 1:
            raise ValueError(f"a per-image context must be [1, tokens, width] or [tokens, width], got "
                             f"{list(context.shape)}")
        rows.append(context if context.ndim == 3 else context[None])
    return rows


class CFGDenoiser:
    """Classifier-free guidance (docs/numerics.md "Eps and CFG denoisers"). ``cond``/``uncond``: contexts
    ``[1 or B, tokens, width]``, or sequences of B per-image contexts of any lengths. ``accepts_context_mask``:
    ``model_fn`` takes ``context_mask=``. The batched contexts are built once per batch size and device;
    ``prepare_context(context, mask)``, when given, turns each into what ``model_fn`` takes instead (a network's
    caption work that no step changes)."""

    def __init__(self, model_fn: ModelFunction, cond: Contexts, uncond: Contexts | None, cfg: float, *,
                 accepts_context_mask: bool = False,
                 prepare_context: Callable[[torch.Tensor, torch.Tensor | None], object] | None = None):
        self.model_fn = model_fn
        self.cond = cond
        self.uncond = uncond
        self.cfg = float(cfg)
        self.accepts_context_mask = accepts_context_mask
        self.prepare_context = prepare_context
        self._plan: tuple[tuple, list[ContextCall]] | None = None

    @property
    def guided(self) -> bool:
        return self.uncond is not None and not math.isclose(self.cfg, 1.0)

    def context_calls(self, batch: int, device: torch.device) -> list[ContextCall]:
        """The model calls for a latent batch of ``batch`` images (rows: uncond of every image, then cond)."""
        key = (batch, str(device))
        if self._plan is None or self._plan[0] != key:
            rows = _context_rows(self.cond, batch)
            if self.guided:
                rows = _context_rows(self.uncond, batch) + rows  # uncond first, the order the reference batches in
            rows = [row.to(device) for row in rows]
            calls = plan_context_calls(rows, can_mask=self.accepts_context_mask)
            if self.prepare_context is not None:
                calls = [ContextCall(call.rows, self.prepare_context(call.context, call.mask)) for call in calls]
            self._plan = (key, calls)
        return self._plan[1]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma``: one per image, on ``x``'s device (what the samplers pass)."""
        calls = self.context_calls(x.shape[0], x.device)
        if not self.guided:
            return self._run(calls, x, sigma) * self.cfg
        uncond_pred, cond_pred = self._run(calls, torch.cat([x, x]), torch.cat([sigma, sigma])).chunk(2)
        return uncond_pred + (cond_pred - uncond_pred) * self.cfg

    def _run(self, calls: list[ContextCall], x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if len(calls) == 1:
            return self._call_model(calls[0], x, sigma)
        out = None
        for call in calls:
            pred = self._call_model(call, x[call.rows], sigma[call.rows])
            if out is None:
                out = pred.new_empty((x.shape[0],) + pred.shape[1:])
            out[call.rows] = pred
        return out

    def _call_model(self, call: ContextCall, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if call.mask is None:
            return self.model_fn(x, sigma, call.context)
        return self.model_fn(x, sigma, call.context, context_mask=call.mask)

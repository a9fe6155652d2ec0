"""UniPC (B(h) variants) exactly as the reference's ``sample_unipc`` runs it, in its order of operations
(docs/numerics.md "Samplers"): no installable library has ComfyUI's variant (on sigmas, not on A1111's timestep grid).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional, Sequence

import torch

from tinybreaker_ext.sampling.samplers_common import ProgressCallback, prepare_sigmas, report

UNIPC_FINAL_SIGMA = 0.001


# VP quantities of a sigma (ComfyUI's SigmaConvert): alpha = 1/sqrt(1+σ²), std = σ/sqrt(1+σ²), lambda = log(alpha/std).
def _log_alpha(sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _alpha(sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(_log_alpha(sigma))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1. - torch.exp(2. * _log_alpha(sigma)))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    log_alpha = _log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1. - torch.exp(2. * log_alpha))


def _per_sample(values: torch.Tensor, dims: int) -> torch.Tensor:
    return values[(...,) + (None,) * (dims - 1)]


def _data_prediction(denoiser, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 in VP space from a sigma-space denoiser, through the eps the reference derives; ``t``: a sigma per image."""
    sigma = t.view(t.shape[:1] + (1,) * (x.ndim - 1))
    scaled = x * ((sigma ** 2 + 1.0) ** 0.5)
    noise = (scaled - denoiser(scaled, t)) / sigma
    dims = x.dim()
    return (x - _per_sample(_std(t), dims) * noise) / _per_sample(_alpha(t), dims)


class _Coefficients(NamedTuple):
    """What one update needs that depends only on the sigmas: divisors of the model-output differences, the
    predictor and corrector weights (``rhos_c`` None without corrector) and the per-sample factors [B]."""

    rks: tuple[torch.Tensor, ...]
    rhos_p: Optional[torch.Tensor]
    rhos_c: Optional[torch.Tensor]
    x_factor: torch.Tensor
    model_factor: torch.Tensor
    b_factor: torch.Tensor

    def to(self, device: torch.device) -> "_Coefficients":
        return _Coefficients(tuple(rk.to(device) for rk in self.rks),
                             *(None if value is None else value.to(device) for value in self[1:]))


def _bh_coefficients(t_prev_list: list, t: torch.Tensor, order: int, variant: str,
                     use_corrector: bool) -> _Coefficients:
    """The sigma-only part of one multistep UniP step plus UniC corrector (data-prediction form), on the host."""
    t_prev_0 = t_prev_list[-1]
    lambda_prev_0 = _lambda(t_prev_0)
    lambda_t = _lambda(t)
    sigma_prev_0, sigma_t = _std(t_prev_0), _std(t)
    alpha_t = torch.exp(_log_alpha(t))
    h = lambda_t - lambda_prev_0

    rks = []
    for i in range(1, order):
        lambda_prev_i = _lambda(t_prev_list[-(i + 1)])
        rks.append(((lambda_prev_i - lambda_prev_0) / h)[0])
    divisors = tuple(rks)
    rks.append(torch.ones((), dtype=h.dtype, device=h.device))
    rks = torch.stack(rks)

    hh = -h[0]
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial_i = 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= (i + 1)
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    matrix = torch.stack(rows)
    b = torch.stack(b)

    half = torch.tensor([0.5], dtype=b.dtype)
    rhos_p = None
    if divisors:
        rhos_p = half if order == 2 else torch.linalg.solve(matrix[:-1, :-1], b[:-1])
    rhos_c = None
    if use_corrector:
        rhos_c = half if order == 1 else torch.linalg.solve(matrix, b)
    return _Coefficients(divisors, rhos_p, rhos_c, sigma_t / sigma_prev_0, alpha_t * h_phi_1, alpha_t * b_h)


class _Update(NamedTuple):
    """One UniP(C) update of the reference's loop: it reaches timestep ``step``; warm-up updates append to the
    history of model outputs, later ones shift it (a window of ``order`` entries)."""

    step: int
    warm_up: bool
    coefficients: _Coefficients


def _updates(host_timesteps: torch.Tensor, batch: int, order: int, variant: str,
             device: torch.device) -> list[list[_Update]]:
    """The updates of each reported step, in the reference's order: none at step 0 (only the model call), one
    warm-up update below ``order``, then multistep updates of falling order at the end (lower_order_final), the
    last reported step also doing the final update to ``steps`` without corrector. Their coefficients are
    computed on the host and moved to ``device`` here, once."""
    steps = len(host_timesteps) - 1
    t_prev_list = [host_timesteps[0].expand(batch)]
    plan: list[list[_Update]] = [[]]
    for step_index in range(1, steps):
        warm_up = step_index < order
        if warm_up:
            targets = [(step_index, step_index, True)]  # (step, order, use_corrector)
        else:
            last = step_index + (1 if step_index == steps - 1 else 0)
            targets = [(step, min(order, steps + 1 - step), step != steps) for step in range(step_index, last + 1)]
        updates = []
        for step, update_order, use_corrector in targets:
            vec_t = host_timesteps[step].expand(batch)
            coefficients = _bh_coefficients(t_prev_list, vec_t, update_order, variant, use_corrector)
            updates.append(_Update(step, warm_up, coefficients.to(device)))
            t_prev_list = (t_prev_list if warm_up else t_prev_list[1:]) + [vec_t]
        plan.append(updates)
    return plan


def _bh_update(model, x: torch.Tensor, model_prev_list: list, coefficients: _Coefficients,
               t: torch.Tensor):
    """One multistep UniP step (predictor) plus, when asked, the UniC corrector, in data-prediction form."""
    dims = x.dim()
    model_prev_0 = model_prev_list[-1]
    differences = [(model_prev_list[-(i + 1)] - model_prev_0) / rk for i, rk in enumerate(coefficients.rks, 1)]
    stacked = torch.stack(differences, dim=1) if differences else None

    x_t_ = (_per_sample(coefficients.x_factor, dims) * x
            - _per_sample(coefficients.model_factor, dims) * model_prev_0)
    prediction = torch.tensordot(stacked, coefficients.rhos_p, dims=([1], [0])) if stacked is not None else 0
    x_t = x_t_ - _per_sample(coefficients.b_factor, dims) * prediction
    model_t = None
    rhos_c = coefficients.rhos_c
    if rhos_c is not None:
        model_t = model(x_t, t)
        correction = torch.tensordot(stacked, rhos_c[:-1], dims=([1], [0])) if stacked is not None else 0
        x_t = x_t_ - _per_sample(coefficients.b_factor, dims) * (correction + rhos_c[-1] * (model_t - model_prev_0))
    return x_t, model_t


@torch.no_grad()
def _sample(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
            seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None,
            variant: str) -> torch.Tensor:
    """Deterministic: ``seed`` and ``seeds`` are unused."""
    sigmas, host = prepare_sigmas(sigmas, x)
    if len(sigmas) <= 1:
        return x
    # the reference writes 0.001 into the caller's tensor (docs/numerics.md "Samplers"); we never do
    timesteps, host_timesteps = sigmas.clone(), host.clone()
    if float(host_timesteps[-1]) == 0:
        timesteps[-1] = UNIPC_FINAL_SIGMA
        host_timesteps[-1] = UNIPC_FINAL_SIGMA
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    model = partial(_data_prediction, denoiser)
    steps = len(timesteps) - 1
    batch = x.shape[0]
    plan = _updates(host_timesteps, batch, min(3, len(timesteps) - 2), variant, x.device)

    model_prev_list = [model(x, timesteps[0].expand(batch))]
    for step_index, updates in enumerate(plan):
        reached = 0
        for update in updates:
            vec_t = timesteps[update.step].expand(batch)
            x, model_x = _bh_update(model, x, model_prev_list, update.coefficients, vec_t)
            if update.step < steps:  # warm-up updates never reach the last step
                model_x = model_x if model_x is not None else model(x, vec_t)
                model_prev_list = (model_prev_list if update.warm_up else model_prev_list[1:]) + [model_x]
            reached = update.step
        if callback is not None:
            report(callback, step_index, steps, x / _alpha(timesteps[reached]), model_prev_list[-1])
    return x / _alpha(timesteps[-1])


sample_unipc = partial(_sample, variant="bh1")  # ComfyUI uni_pc: B(h) = h
sample_unipc_bh2 = partial(_sample, variant="bh2")  # ComfyUI uni_pc_bh2: B(h) = e^h - 1

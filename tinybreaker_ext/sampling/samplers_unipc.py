"""UniPC (B(h) variants) exactly as the reference's ``sample_unipc`` runs it (spec §5.10).

The reference converts sigma space to VP space (x / sqrt(1 + σ0²)), replaces a final σ = 0 by 0.001, uses order
min(3, len(sigmas) − 2), data prediction, multistep updates with the UniC corrector and lower-order final steps.
Hand-written port: no installable library reproduces ComfyUI's variant (it works directly on sigmas, not on a
timestep grid like A1111's UniPC), and the expressions keep its order of operations to match it bit for bit.
"""

from __future__ import annotations

from typing import Callable, Optional

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


class _DataPrediction:
    """x0 prediction in VP space from a sigma-space denoiser, through the eps the reference derives from it."""

    def __init__(self, denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.reshape((-1,)).shape[0] == 1:
            t = t.expand((x.shape[0]))
        sigma = t.view(t.shape[:1] + (1,) * (x.ndim - 1))
        scaled = x * ((sigma ** 2 + 1.0) ** 0.5)
        noise = (scaled - self.denoiser(scaled, t)) / sigma
        dims = x.dim()
        return (x - _per_sample(_std(t), dims) * noise) / _per_sample(_alpha(t), dims)


def _bh_update(model: _DataPrediction, x: torch.Tensor, model_prev_list: list, t_prev_list: list, t: torch.Tensor,
               order: int, variant: str, use_corrector: bool):
    """One multistep UniP step (predictor) plus, when asked, the UniC corrector, in data-prediction form."""
    dims = x.dim()
    t_prev_0 = t_prev_list[-1]
    lambda_prev_0 = _lambda(t_prev_0)
    lambda_t = _lambda(t)
    model_prev_0 = model_prev_list[-1]
    sigma_prev_0, sigma_t = _std(t_prev_0), _std(t)
    alpha_t = torch.exp(_log_alpha(t))
    h = lambda_t - lambda_prev_0

    rks, differences = [], []
    for i in range(1, order):
        lambda_prev_i = _lambda(t_prev_list[-(i + 1)])
        rk = ((lambda_prev_i - lambda_prev_0) / h)[0]
        rks.append(rk)
        differences.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
    rks.append(torch.ones((), dtype=h.dtype, device=h.device))
    rks = torch.stack(rks).to(x.device)

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
    b = torch.stack(b).to(x.device)

    half = torch.tensor([0.5], dtype=b.dtype, device=x.device)
    stacked = None
    rhos_p = None
    if differences:
        stacked = torch.stack(differences, dim=1)
        rhos_p = half if order == 2 else torch.linalg.solve(matrix[:-1, :-1], b[:-1])
    if use_corrector:
        rhos_c = half if order == 1 else torch.linalg.solve(matrix, b)

    x_t_ = _per_sample(sigma_t / sigma_prev_0, dims) * x - _per_sample(alpha_t * h_phi_1, dims) * model_prev_0
    prediction = torch.tensordot(stacked, rhos_p, dims=([1], [0])) if stacked is not None else 0
    x_t = x_t_ - _per_sample(alpha_t * b_h, dims) * prediction
    model_t = None
    if use_corrector:
        model_t = model(x_t, t)
        correction = torch.tensordot(stacked, rhos_c[:-1], dims=([1], [0])) if stacked is not None else 0
        x_t = x_t_ - _per_sample(alpha_t * b_h, dims) * (correction + rhos_c[-1] * (model_t - model_prev_0))
    return x_t, model_t


@torch.no_grad()
def _sample(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: Optional[ProgressCallback],
            variant: str) -> torch.Tensor:
    sigmas = prepare_sigmas(sigmas, x)
    if len(sigmas) <= 1:
        return x
    timesteps = sigmas.clone()  # the reference writes 0.001 into the caller's tensor (spec §11.7); we never do
    if timesteps[-1] == 0:
        timesteps[-1] = UNIPC_FINAL_SIGMA
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    model = _DataPrediction(denoiser)
    order = min(3, len(timesteps) - 2)
    steps = len(timesteps) - 1
    batch = x.shape[0]

    for step_index in range(steps):
        if step_index == 0:
            vec_t = timesteps[0].expand(batch)
            model_prev_list = [model(x, vec_t)]
            t_prev_list = [vec_t]
            reached = 0
        elif step_index < order:
            vec_t = timesteps[step_index].expand(batch)
            x, model_x = _bh_update(model, x, model_prev_list, t_prev_list, vec_t, step_index, variant, True)
            if model_x is None:
                model_x = model(x, vec_t)
            model_prev_list.append(model_x)
            t_prev_list.append(vec_t)
            reached = step_index
        else:
            final_extra = 1 if step_index == steps - 1 else 0
            for step in range(step_index, step_index + 1 + final_extra):
                vec_t = timesteps[step].expand(batch)
                step_order = min(order, steps + 1 - step)  # lower_order_final
                use_corrector = step != steps  # no corrector on the very last step
                x, model_x = _bh_update(model, x, model_prev_list, t_prev_list, vec_t, step_order, variant,
                                        use_corrector)
                for i in range(order - 1):
                    t_prev_list[i] = t_prev_list[i + 1]
                    model_prev_list[i] = model_prev_list[i + 1]
                t_prev_list[-1] = vec_t
                if step < steps:
                    if model_x is None:
                        model_x = model(x, vec_t)
                    model_prev_list[-1] = model_x
                reached = step
        if callback is not None:
            report(callback, step_index, steps, x / _alpha(timesteps[reached]), model_prev_list[-1])
    return x / _alpha(timesteps[-1])


def sample_unipc(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int,
                 callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """ComfyUI ``uni_pc`` (B(h) = h). Deterministic: ``seed`` is unused."""
    return _sample(denoiser, x, sigmas, callback=callback, variant="bh1")


def sample_unipc_bh2(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int,
                     callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """ComfyUI ``uni_pc_bh2`` (B(h) = e^h − 1). Deterministic: ``seed`` is unused."""
    return _sample(denoiser, x, sigmas, callback=callback, variant="bh2")

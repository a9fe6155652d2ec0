"""DEIS (max order 3, "tab" coefficients) as the reference runs it (docs/numerics.md "Samplers"), from
zju-pi/diff-sampler (Apache-2.0) via ComfyUI; the EDM-style schedule is used whatever the model's own range.
Hand-written port: no installable library has this variant, and its float32 numerics decide the result's last bits.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from tinybreaker_ext.sampling.samplers_common import ProgressCallback, prepare_sigmas, report

_EDM_SIGMA_MIN = 0.002  # a float: the reference's torch.tensor(0.002) is float32
_EDM_SIGMA_MAX = 80  # an int: the reference's torch.tensor(80) is int64, so numpy takes its log in float64
_EPSILON_S = 1e-3
_INTEGRATION_POINTS = 10000
MAX_ORDER = 3


def _numpy_log_of_square_plus_one(value) -> torch.Tensor:
    """log(value² + 1) the way the reference gets it: numpy's log applied to a torch scalar, in the precision torch
    infers for ``value`` (numpy's float32 log can differ from torch's by one ulp, so torch.log is not used)."""
    squared = torch.tensor(value) ** 2 + 1
    as_numpy = squared.numpy()
    return torch.from_numpy(np.asarray(np.log(as_numpy))).to(torch.float64 if as_numpy.dtype.kind == "i" else
                                                               squared.dtype)


def _vp_times(sigmas: torch.Tensor):
    """VP times of the sigmas, and the linear-VP beta_0 and beta_1; float32 and float64 scalars mix exactly as in the
    reference, so torch's promotion rounds the same intermediate values to float32."""
    log_max = _numpy_log_of_square_plus_one(_EDM_SIGMA_MAX)
    beta_d = 2 * (_numpy_log_of_square_plus_one(_EDM_SIGMA_MIN) / _EPSILON_S - log_max) / (_EPSILON_S - 1)
    beta_min = log_max - 0.5 * beta_d
    sigmas = sigmas.detach().cpu()
    times = ((beta_min ** 2 + 2 * beta_d * (sigmas ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    return times, beta_min, beta_d + beta_min


def _integrand(beta_0: torch.Tensor, beta_1: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    # d log α / dτ through autograd, like the reference (an analytic derivative rounds differently).
    with torch.inference_mode(False), torch.enable_grad():
        taus, beta_0, beta_1 = taus.clone().requires_grad_(True), beta_0.clone(), beta_1.clone()
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)  # VP alpha of time
        alpha.log().sum().backward()
        d_log_alpha = taus.grad
        alpha = alpha.detach()
    return -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))


def _lagrange_basis(nodes: torch.Tensor, j: int, taus: torch.Tensor):
    basis = 1
    for k in range(nodes.shape[0]):
        if k != j:
            basis = basis * ((taus - nodes[k]) / (nodes[j] - nodes[k]))
    return basis


def deis_coefficients(sigmas: torch.Tensor) -> list[list[torch.Tensor]]:
    """Each step's multistep coefficients from host sigmas: min(i + 1, MAX_ORDER) for step i, none for Euler steps."""
    times, beta_0, beta_1 = _vp_times(sigmas)
    coefficients: list[list[torch.Tensor]] = []
    for i, (t_cur, t_next) in enumerate(zip(times[:-1], times[1:])):
        order = min(i + 1, MAX_ORDER)
        if order == 1 or sigmas[i + 1] <= 0:  # a step to sigma 0 is an Euler step: no coefficients needed
            coefficients.append([])
            continue
        taus = torch.linspace(float(t_cur), float(t_next), _INTEGRATION_POINTS, dtype=times.dtype)
        dtau = (t_next - t_cur) / _INTEGRATION_POINTS
        nodes = times[[i - k for k in range(order)]]
        integrand = _integrand(beta_0, beta_1, taus)
        coefficients.append([torch.sum(integrand * _lagrange_basis(nodes, j, taus)) * dtau for j in range(order)])
    return coefficients


@torch.no_grad()
def sample_deis(denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
                seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """DEIS multistep in sigma space. Deterministic: ``seed`` and ``seeds`` are unused."""
    sigmas, host = prepare_sigmas(sigmas, x)
    coefficients = [[c.to(x.device) for c in step] for step in deis_coefficients(host)]
    values = host.tolist()
    ones = x.new_ones([x.shape[0]])
    history: list[torch.Tensor] = []
    total = len(sigmas) - 1
    for i in range(total):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, t_cur * ones)
        derivative = (x - denoised) / t_cur
        order = 1 if values[i + 1] <= 0 else min(MAX_ORDER, i + 1)
        if order == 1:
            x_next = x + (t_next - t_cur) * derivative
        else:
            step_coefficients = coefficients[i]
            x_next = x + step_coefficients[0] * derivative
            for k in range(1, order):
                x_next = x_next + step_coefficients[k] * history[-k]
        history = (history + [derivative])[-(MAX_ORDER - 1):]  # the last MAX_ORDER - 1 derivatives
        x = x_next
        report(callback, i, total, x, denoised)
    return x

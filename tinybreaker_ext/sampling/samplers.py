"""Samplers in sigma space with the reference's (ComfyUI / k-diffusion) update formulas, in its order of operations
(docs/numerics.md "Samplers"; no installable library reproduces its numbers down to float32 rounding).

Every sampler is ``sampler(denoiser, x, sigmas, *, seed=None, seeds=None, callback=None) -> x``: ``x`` is the
already-noised start point at ``sigmas[0]``, ``denoiser(x, sigma[B]) -> denoised x0``, and
``callback(step, total, x, denoised)`` runs after each step (what it raises, e.g. `Cancelled`, stops sampling).
Stochastic samplers take ``seed`` (one noise stream for the batch, as the reference) or ``seeds`` (one per image, so
image k equals a single-image run with seed k); deterministic ones ignore both.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import numpy
import torch

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.sampling.samplers_common import (ProgressCallback, noise_streams, prepare_sigmas, report,
                                                      to_device)
from tinybreaker_ext.sampling.samplers_deis import sample_deis
from tinybreaker_ext.sampling.samplers_unipc import sample_unipc, sample_unipc_bh2

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LMS_ORDER = 4  # k-diffusion's default, which the reference runs


@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
                 seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE (k-diffusion ``sample_euler`` without churn)."""
    sigmas, _host = prepare_sigmas(sigmas, x)
    ones = x.new_ones([x.shape[0]])
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * ones)
        derivative = (x - denoised) / sigmas[i]
        x = x + derivative * (sigmas[i + 1] - sigmas[i])
        report(callback, i, total, x, denoised)
    return x


def _ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor):
    """(sigma_down, sigma_up) of an eta-1 ancestral step; takes host sigmas (``min`` compares them)."""
    sigma_up = min(sigma_to, (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


class StepNoise:
    """Fresh standard-normal noise for each step from CPU generators (device-independent), one per noise stream."""

    def __init__(self, x: torch.Tensor, seed: Optional[int], seeds: Optional[Sequence[int]]):
        entropies, self._shape = noise_streams(x, seed, seeds)
        self._generators = [torch.Generator(device="cpu").manual_seed(entropy) for entropy in entropies]
        self._dtype, self._device = x.dtype, x.device

    def __call__(self) -> torch.Tensor:
        return to_device([torch.randn(self._shape, dtype=self._dtype, generator=generator, device="cpu")
                          for generator in self._generators], self._device)


@torch.no_grad()
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
                           seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None,
                           ) -> torch.Tensor:
    """Euler ancestral (eta 1) with `StepNoise`."""
    sigmas, host = prepare_sigmas(sigmas, x)
    noise = StepNoise(x, seed, seeds)
    total = len(sigmas) - 1
    levels = [_ancestral_step(host[i], host[i + 1]) for i in range(total)]  # (sigma_down, sigma_up) per step
    lands_on_data = [float(sigma_down) == 0 for sigma_down, _ in levels]
    levels_on_device = torch.stack([torch.stack(pair) for pair in levels]).to(x.device) if total else None
    ones = x.new_ones([x.shape[0]])
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * ones)
        if lands_on_data[i]:
            x = denoised
        else:
            sigma_down, sigma_up = levels_on_device[i]
            derivative = (x - denoised) / sigmas[i]
            x = x + derivative * (sigma_down - sigmas[i]) + noise() * sigma_up
        report(callback, i, total, x, denoised)
    return x


def lms_coefficient(order: int, t: list[float], i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial through t_i, ..., t_{i-order+1} for node i-j, by
    scipy's quad over a float32 basis, as numpy 2 runs the reference's (docs/numerics.md "Samplers")."""
    from scipy import integrate  # slow to import: only when lms runs

    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")
    nodes = [numpy.float32(value) for value in t]

    def basis(tau: float) -> float:
        product = numpy.float32(1.0)
        tau32 = numpy.float32(tau)
        for k in range(order):
            if k != j:
                product = product * ((tau32 - nodes[i - k]) / (nodes[i - j] - nodes[i - k]))
        return float(product)

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
               seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma, up to order 4); the step to sigma 0 returns the denoised image."""
    sigmas, host = prepare_sigmas(sigmas, x)
    nodes = host.tolist()
    ones = x.new_ones([x.shape[0]])
    derivatives: list[torch.Tensor] = []
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * ones)
        derivatives.append((x - denoised) / sigmas[i])
        if len(derivatives) > LMS_ORDER:
            derivatives.pop(0)
        if nodes[i + 1] == 0:
            x = denoised
        else:
            current_order = min(i + 1, LMS_ORDER)
            coefficients = [lms_coefficient(current_order, nodes, i, j) for j in range(current_order)]
            x = x + sum(c * d for c, d in zip(coefficients, reversed(derivatives)))
        report(callback, i, total, x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
                    seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None,
                    ) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in log-sigma, data prediction."""
    sigmas, host = prepare_sigmas(sigmas, x)
    values = host.tolist()
    ones = x.new_ones([x.shape[0]])
    old_denoised = None
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * ones)
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        ratio = t_next.neg().exp() / t.neg().exp()
        if old_denoised is None or values[i + 1] == 0:
            x = ratio * x - (-h).expm1() * denoised
        else:
            h_last = t - sigmas[i - 1].log().neg()
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = ratio * x - (-h).expm1() * denoised_d
        old_denoised = denoised
        report(callback, i, total, x, denoised)
    return x


class BrownianNoise:
    """Unit-variance increments of CPU Brownian trees (k-diffusion's BrownianTreeNoiseSampler), one per noise stream;
    they depend only on the seed and the sigma interval, not on the step count."""

    def __init__(self, x: torch.Tensor, sigmas: torch.Tensor, host_sigmas: torch.Tensor, *,
                 seed: Optional[int] = None, seeds: Optional[Sequence[int]] = None):
        import torchsde  # only the SDE samplers need it

        sigma_min, sigma_max = host_sigmas[host_sigmas > 0].min(), host_sigmas.max()
        low, high = (sigma_min, sigma_max) if sigma_min < sigma_max else (sigma_max, sigma_min)
        self._sign = 1 if sigma_min < sigma_max else -1
        entropies, shape = noise_streams(x, seed, seeds)
        start = torch.zeros(shape, dtype=x.dtype)
        self._trees = [torchsde.BrownianTree(low, start, high, entropy=entropy) for entropy in entropies]
        self._sigmas, self._host = sigmas, host_sigmas

    def __call__(self, i: int) -> torch.Tensor:
        """The increment from sigma ``i`` to sigma ``i + 1``."""
        sigma, sigma_next = self._sigmas[i], self._sigmas[i + 1]
        low, high = self._host[i], self._host[i + 1]
        sign = 1 if low < high else -1
        if sign < 0:
            low, high = high, low
        with warnings.catch_warnings():
            # torchsde complains when a float32-rounded query time lies a hair outside the tree's interval.
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            parts = [tree(low.float(), high.float()) for tree in self._trees]
        increment = to_device([part.to(sigma.dtype) for part in parts], sigma.device)
        return increment * (self._sign * sign) / (sigma_next - sigma).abs().sqrt()


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, seed: Optional[int] = None,
                        seeds: Optional[Sequence[int]] = None, callback: Optional[ProgressCallback] = None,
                        ) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (midpoint, eta 1) with `BrownianNoise`."""
    sigmas, host = prepare_sigmas(sigmas, x)
    if len(sigmas) <= 1:
        return x
    noise_sampler = BrownianNoise(x, sigmas, host, seed=seed, seeds=seeds)
    values = host.tolist()
    ones = x.new_ones([x.shape[0]])
    old_denoised, h, h_last = None, None, None
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * ones)
        if values[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
            h = lambda_t - lambda_s
            h_eta = h * 2  # h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            x = x + noise_sampler(i) * sigmas[i + 1] * (-2 * h).expm1().neg().sqrt()
        old_denoised = denoised
        h_last = h
        report(callback, i, total, x, denoised)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "lms": sample_lms,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "deis": sample_deis,
    "uni_pc": sample_unipc,
    "uni_pc_bh2": sample_unipc_bh2,
    # The reference's "ddim" is k-diffusion Euler (its only difference, random inpainting noise, needs a mask).
    "ddim": sample_euler,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler of a reference (ComfyUI) name; ParameterError for any other name."""
    sampler = SAMPLERS.get(name)
    if sampler is None:
        raise ParameterError("sampler", f"unsupported sampler {name!r} (supported: {', '.join(SAMPLERS)})")
    return sampler


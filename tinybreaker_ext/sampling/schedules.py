"""Discrete VP sigma tables, the reference's schedulers and its step selection (docs/numerics.md "Sigma tables",
docs/numerics.md "Schedulers", docs/numerics.md "Step windows"): hand-written ports of ComfyUI's formulas, as no
installable library reproduces its numbers down to the last float32 bit."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy
import torch

from tinybreaker_ext.errors import ParameterError

# Samplers for which the reference computes one step more and drops the penultimate sigma
# (docs/numerics.md "Step windows", rule 4).
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset(("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"))


def discrete_sigmas(kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02, n: int = 1000,
                    ) -> torch.Tensor:
    """The ``n`` discrete sigmas of a DDPM beta schedule, as float64 (docs/numerics.md "Sigma tables"); ``kind`` uses
    diffusers' names: ``"linear"`` (PixArt) or ``"scaled_linear"`` (SD1, square roots spaced linearly)."""
    if kind == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    else:
        raise ParameterError("beta_schedule", f"unknown kind {kind!r} (expected 'linear' or 'scaled_linear')")
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


@lru_cache(maxsize=None)
def pixart_sigmas() -> torch.Tensor:
    """PixArt-Sigma's table (σ_min 0.0100005, σ_max 157.407)."""
    return discrete_sigmas("linear", 1e-4, 0.02)


@lru_cache(maxsize=None)
def sd1_sigmas() -> torch.Tensor:
    """Stable Diffusion 1.x's table (σ_min 0.0292, σ_max 14.6146)."""
    return discrete_sigmas("scaled_linear", 0.00085, 0.012)


class DiscreteSchedule:
    """A model's discrete sigmas as the reference holds them: float32 sigmas and log-sigmas, each rounded once from
    the float64 table (docs/numerics.md "Sigma tables")."""

    def __init__(self, table: torch.Tensor):
        table = torch.as_tensor(table).detach().cpu()
        self.sigmas = table.to(torch.float32)
        self.log_sigmas = table.to(torch.float64).log().to(torch.float32)
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]
        self._log_sigmas_on: dict[str, torch.Tensor] = {}  # copies on compute devices, so a step copies nothing

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the nearest table entry in log space (an integer tensor shaped like ``sigma``)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.log()
        log_sigmas = self._log_sigmas_on.get(str(log_sigma.device))
        if log_sigmas is None:
            log_sigmas = self._log_sigmas_on.setdefault(str(log_sigma.device), self.log_sigmas.to(log_sigma.device))
        distances = log_sigma.reshape(1, -1) - log_sigmas[:, None]
        return distances.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a fractional timestep, interpolated linearly in log space."""
        t = torch.clamp(torch.as_tensor(timestep).float().cpu(), min=0, max=len(self.sigmas) - 1)
        low, high, weight = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - weight) * self.log_sigmas[low] + weight * self.log_sigmas[high]).exp()


def as_schedule(model_sigmas) -> DiscreteSchedule:
    """Accept a `DiscreteSchedule` or a sigma table (preferably the float64 one from `discrete_sigmas`)."""
    return model_sigmas if isinstance(model_sigmas, DiscreteSchedule) else DiscreteSchedule(model_sigmas)


def timestep_of(sigma, model_sigmas) -> torch.Tensor:
    """The nearest integer timestep (argmin |log σ − log σ_t|) that the model receives for ``sigma``."""
    return as_schedule(model_sigmas).timestep(torch.as_tensor(sigma, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------------------------
# Schedulers: each returns the reference's list (normally steps+1 values ending in 0) as a float32 tensor.

def _simple(schedule: DiscreteSchedule, steps: int) -> list[float]:
    stride = len(schedule.sigmas) / steps
    return [float(schedule.sigmas[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]


def _ddim_uniform(schedule: DiscreteSchedule, steps: int) -> list[float]:
    # Starts at index 1 and walks up in strides of len // steps, so it yields more than steps+1 values when the
    # table length is not a multiple of steps (docs/numerics.md "Schedulers"); callers keep the last steps+1.
    index = 1
    if math.isclose(float(schedule.sigmas[index]), 0, abs_tol=0.00001):
        steps += 1
        values = []
    else:
        values = [0.0]
    stride = max(len(schedule.sigmas) // steps, 1)
    while index < len(schedule.sigmas):
        values.append(float(schedule.sigmas[index]))
        index += stride
    return values[::-1]


def _normal(schedule: DiscreteSchedule, steps: int, sgm: bool = False) -> list[float]:
    start = float(schedule.timestep(schedule.sigma_max))
    end = float(schedule.timestep(schedule.sigma_min))
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(schedule.sigma(torch.tensor(end))), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    values = [float(schedule.sigma(t)) for t in timesteps]
    return values + [0.0] if append_zero else values


def _karras(schedule: DiscreteSchedule, steps: int, rho: float = 7.0) -> torch.Tensor:
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _exponential(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp()
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _beta(schedule: DiscreteSchedule, steps: int) -> list[float]:
    # Timesteps at Beta(0.6, 0.6) quantiles of 1 - k/steps, rounded half-to-even; repeats are dropped
    # (docs/numerics.md "Schedulers"). scipy, as in the reference (torchsde, which we require, needs it too).
    from scipy.stats import beta  # slow to import: only when this scheduler runs

    quantiles = beta.ppf(1 - numpy.linspace(0, 1, steps, endpoint=False), 0.6, 0.6)  # the reference's alpha, beta
    values, previous = [], None
    for index in numpy.rint(quantiles * (len(schedule.sigmas) - 1)):
        if index != previous:
            values.append(float(schedule.sigmas[int(index)]))
        previous = index
    return values + [0.0]


def _linear_quadratic(schedule: DiscreteSchedule, steps: int, threshold_noise: float = 0.025) -> torch.Tensor:
    # Mochi's schedule: 1 - σ/σ_max rises linearly to threshold_noise over the first half of the steps, then
    # quadratically to 1. Computed in float64 lists, rounded to float32, then scaled by the float32 σ_max.
    if steps == 1:
        fractions = [1.0, 0.0]
    else:
        linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        threshold_noise_step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = threshold_noise_step_diff / (linear_steps * quadratic_steps ** 2)
        linear_coef = threshold_noise / linear_steps - 2 * threshold_noise_step_diff / (quadratic_steps ** 2)
        const = quadratic_coef * (linear_steps ** 2)
        quadratic = [quadratic_coef * (i ** 2) + linear_coef * i + const for i in range(linear_steps, steps)]
        fractions = [1.0 - value for value in linear + quadratic + [1.0]]
    return torch.tensor(fractions, dtype=torch.float32) * schedule.sigma_max


def _kl_optimal(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    # tan of a linear ramp from atan(σ_max) to atan(σ_min), in float32. For one step the reference divides 0 by 0 and
    # returns NaN; we give [σ_max, 0] (the ramp's first point), as karras and exponential do.
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    ramp = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    sigmas = ramp.new_zeros(steps + 1)
    sigmas[:-1] = (ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)).tan_()
    return sigmas


_SCHEDULER_FUNCTIONS = {
    "simple": _simple,
    "normal": _normal,
    "karras": _karras,
    "exponential": _exponential,
    "sgm_uniform": lambda schedule, steps: _normal(schedule, steps, sgm=True),
    "ddim_uniform": _ddim_uniform,
    "beta": _beta,
    "linear_quadratic": _linear_quadratic,
    "kl_optimal": _kl_optimal,
}
SCHEDULERS = tuple(_SCHEDULER_FUNCTIONS)


def scheduler_sigmas(model_sigmas, scheduler: str, steps: int) -> torch.Tensor:
    """The reference scheduler's sigma list for ``steps`` >= 1 steps (float32, normally steps+1 values ending in 0;
    ``ddim_uniform`` can give more and ``beta`` fewer, exactly as the reference does). `compute_sigmas` checks the
    scheduler's name and the steps first."""
    values = _SCHEDULER_FUNCTIONS[scheduler](as_schedule(model_sigmas), steps)
    return values.float() if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float32)


def step_window(steps: int, steps_start: int = 0, steps_end: int = 10000, steps_nfactor: int = 0
                ) -> tuple[int, int, int]:
    """(steps, start, end) after the reference's rules 1-2 of docs/numerics.md "Step windows" (``steps_nfactor``
    is the detail level); ``start >= end`` means the stage is skipped."""
    if steps_end < 0:
        steps_end = steps + steps_end
    steps_start = max(0, steps_start)
    steps_end = min(steps_end, steps)
    if steps_nfactor > 0:
        taken_from_start = min(steps_nfactor, steps_start)
        added_at_end = steps_nfactor - taken_from_start
        steps_start = max(0, steps_start - taken_from_start)
        steps_end = max(0, steps_end + added_at_end)
        steps = max(0, steps + added_at_end)
    elif steps_nfactor < 0:
        steps_start = max(0, steps_start - steps_nfactor)
        steps_end = max(0, steps_end)
    return steps, steps_start, steps_end


def compute_sigmas(model_sigmas, *, sampler: str, scheduler: str, steps: int, steps_start: int = 0,
                   steps_end: int = 10000, steps_nfactor: int = 0) -> torch.Tensor:
    """The sigmas one stage runs (docs/numerics.md "Step windows"); an empty tensor means the stage is skipped."""
    for field, value in (("steps", steps), ("steps_start", steps_start), ("steps_end", steps_end),
                         ("steps_nfactor", steps_nfactor)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(field, f"must be an integer, got {value!r}")
    if scheduler not in _SCHEDULER_FUNCTIONS:
        raise ParameterError("scheduler", f"unknown scheduler {scheduler!r} (expected one of {', '.join(SCHEDULERS)})")
    if steps < 0:
        raise ParameterError("steps", f"must not be negative, got {steps}")

    steps, steps_start, steps_end = step_window(steps, steps_start, steps_end, steps_nfactor)
    if steps == 0 or steps_start >= steps_end:
        return torch.zeros(0, dtype=torch.float32)

    if sampler in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        sigmas = scheduler_sigmas(model_sigmas, scheduler, steps + 1)
        sigmas = torch.cat((sigmas[:-2], sigmas[-1:]))
    else:
        sigmas = scheduler_sigmas(model_sigmas, scheduler, steps)
    sigmas = sigmas[-(steps + 1):]
    return sigmas[steps_start:steps_end + 1].clone()

"""Samplers against exact solutions of a Gaussian toy problem, plus reproducibility and callback behaviour.

Data ~ N(MU, S²) per element has the exact denoiser D(x, σ) = (S²x + σ²MU)/(S² + σ²), and the probability-flow ODE
from σ_hi to σ_lo is solved by x_lo − MU = (x_hi − MU)·sqrt((S² + σ_lo²)/(S² + σ_hi²)).
"""

from __future__ import annotations

import math

import pytest
import torch

from tinybreaker_ext.errors import Cancelled, ParameterError
from tinybreaker_ext.sampling.samplers import SAMPLERS, get_sampler, lms_coefficient

MU, S = 0.3, 0.5


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    assert sigma.shape == (x.shape[0],)
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    return (S ** 2 * x + s ** 2 * MU) / (S ** 2 + s ** 2)


def ode_solution(x_hi: torch.Tensor, sigma_hi: float, sigma_lo: float) -> torch.Tensor:
    return MU + (x_hi - MU) * math.sqrt((S ** 2 + sigma_lo ** 2) / (S ** 2 + sigma_hi ** 2))


def geometric_sigmas(high: float, low: float, steps: int, dtype=torch.float64) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(high), math.log(low), steps + 1, dtype=dtype))


DETERMINISTIC = ["euler", "ddim", "lms", "dpmpp_2m", "deis", "uni_pc", "uni_pc_bh2"]
# Observed global order on this smooth problem, with the reason where it is below the method's nominal order:
# uni_pc's lower_order_final makes its last step first order without corrector -> global order 2.
MIN_ORDER = {"euler": 0.9, "ddim": 0.9, "dpmpp_2m": 1.85, "lms": 2.8, "deis": 2.6, "uni_pc": 1.85, "uni_pc_bh2": 1.85}
MAX_ORDER = {"euler": 1.1, "ddim": 1.1, "dpmpp_2m": 2.2}
# uni_pc only reaches its asymptotic regime from ~32 steps; DEIS's coefficient integrals are the costly part.
STEP_COUNTS = {"uni_pc": (16, 32, 64, 128), "uni_pc_bh2": (16, 32, 64, 128), "deis": (8, 16, 32, 64)}


def test_registry_has_the_reference_names():
    assert {"euler", "euler_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "deis", "uni_pc", "ddim"} <= set(SAMPLERS)
    assert get_sampler("deis") is SAMPLERS["deis"]
    with pytest.raises(ParameterError, match="sampler"):
        get_sampler("heun")


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_converge_with_their_order(name):
    x_hi = MU + 10.0 * torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = ode_solution(x_hi, 10.0, 0.05)
    errors = []
    for steps in STEP_COUNTS.get(name, (8, 16, 32, 64)):
        result = SAMPLERS[name](gaussian_denoiser, x_hi, geometric_sigmas(10.0, 0.05, steps), seed=0)
        errors.append(float((result - exact).abs().max()))
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert errors[-1] < 0.05
    assert min(orders[-2:]) > MIN_ORDER[name], (errors, orders)
    if name in MAX_ORDER:
        assert max(orders[-2:]) < MAX_ORDER[name], (errors, orders)


def test_higher_order_samplers_beat_euler():
    x_hi = MU + 5.0 * torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = ode_solution(x_hi, 5.0, 0.1)
    sigmas = geometric_sigmas(5.0, 0.1, 20)
    euler_error = float((SAMPLERS["euler"](gaussian_denoiser, x_hi, sigmas, seed=0) - exact).abs().max())
    for name in ("lms", "dpmpp_2m", "deis", "uni_pc"):
        error = float((SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=0) - exact).abs().max())
        assert error < euler_error / 5, name


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_reach_the_data_at_sigma_zero(name):
    # With a final sigma of 0 every sampler returns (close to) the clean end point of the ODE; Euler is first order.
    x_hi = MU + 3.0 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    sigmas = torch.cat([geometric_sigmas(3.0, 0.01, 24, dtype=torch.float32), torch.zeros(1)])
    result = SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=0)
    assert result.dtype == torch.float32
    tolerance = 0.1 if name in ("euler", "ddim") else 0.01
    torch.testing.assert_close(result, ode_solution(x_hi, 3.0, 0.0), atol=tolerance, rtol=0)


def test_lms_coefficients_integrate_lagrange_polynomials_exactly():
    nodes = [9.0, 6.5, 4.0, 2.5, 1.2]
    # The basis is evaluated in float32 as the reference does, so the integrals are exact to float32 rounding.
    # Lagrange basis of a linear polynomial, integrated by hand: nodes t1 (i=1), t0; node j=1 is t0.
    start, end = nodes[1], nodes[2]
    expected = ((end - nodes[1]) ** 2 - (start - nodes[1]) ** 2) / (2 * (nodes[0] - nodes[1]))
    assert lms_coefficient(2, nodes, 1, 1) == pytest.approx(expected, rel=1e-6)
    # All basis polynomials sum to 1, so the coefficients sum to the step length.
    for order in (1, 2, 3, 4):
        i = 3
        total = sum(lms_coefficient(order, nodes, i, j) for j in range(order))
        assert total == pytest.approx(nodes[i + 1] - nodes[i], rel=1e-6)
    with pytest.raises(ValueError):
        lms_coefficient(4, nodes, 1, 0)


def test_lms_coefficients_equal_scipy_quad_over_float32_sigmas_when_available():
    """k-diffusion's linear_multistep_coeff integrates over the float32 sigmas as a numpy array; with numpy 2's
    promotion the basis is float32 there too, and the coefficients agree bit for bit."""
    import numpy

    integrate = pytest.importorskip("scipy.integrate")
    if numpy.lib.NumpyVersion(numpy.__version__) < "2.0.0":
        pytest.skip("numpy 1 promotes the reference's basis to float64; the reference fixture pins numpy 2's")
    sigmas = geometric_sigmas(14.6, 0.03, 12).float().numpy()
    nodes = sigmas.tolist()
    for i in range(3, 11):
        for order in (1, 2, 3, 4):
            for j in range(order):
                def basis(tau):
                    product = 1.0
                    for k in range(order):
                        if k != j:
                            product *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
                    return product
                reference = integrate.quad(basis, sigmas[i], sigmas[i + 1], epsrel=1e-4)[0]
                assert lms_coefficient(order, nodes, i, j) == reference


# --- stochastic samplers ------------------------------------------------------------------------------------------

SIGMA_HI = 2.0


def _stochastic_setup(steps: int, elements_side: int):
    z = torch.randn(1, 4, elements_side, elements_side, generator=torch.Generator().manual_seed(7))
    x_hi = MU + z * math.sqrt(S ** 2 + SIGMA_HI ** 2)
    sigmas = torch.cat([geometric_sigmas(SIGMA_HI, 0.03, steps - 1, dtype=torch.float32), torch.zeros(1)])
    return x_hi, sigmas


def _expected_ancestral(sigmas: list[float]):
    """Exact mean-free variance of the output and its covariance with the input for Euler ancestral (eta 1) on the
    Gaussian problem: each step is linear in y = x − MU plus independent noise."""
    variance = covariance = S ** 2 + SIGMA_HI ** 2
    for sigma, sigma_next in zip(sigmas, sigmas[1:]):
        sigma_up = min(sigma_next, math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
        sigma_down = math.sqrt(sigma_next ** 2 - sigma_up ** 2)
        if sigma_down == 0:
            factor = S ** 2 / (S ** 2 + sigma ** 2)  # x = denoised
        else:
            factor = 1 + sigma * (sigma_down - sigma) / (S ** 2 + sigma ** 2)
        variance = factor ** 2 * variance + sigma_up ** 2
        covariance = factor * covariance
    return variance, covariance


def _expected_dpmpp_2m_sde(sigmas: list[float]):
    """Same for DPM-Solver++(2M) SDE (eta 1, midpoint): linear in (y_i, y_{i−1}) plus independent Brownian noise."""
    hi_var = S ** 2 + SIGMA_HI ** 2
    # Covariance of (y_i, y_{i-1}, y_hi).
    cov = torch.tensor([[hi_var, 0.0, hi_var], [0.0, 0.0, 0.0], [hi_var, 0.0, hi_var]], dtype=torch.float64)
    gain = [S ** 2 / (S ** 2 + s ** 2) for s in sigmas]  # denoised − MU = gain·y
    h_last = None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas, sigmas[1:])):
        if sigma_next == 0:
            matrix = torch.tensor([[gain[i], 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
            noise = 0.0
        else:
            h = math.log(sigma / sigma_next)
            decay = math.exp(-2 * h)
            a, b = decay + (1 - decay) * gain[i], 0.0
            if i > 0:
                correction = 0.5 * (1 - decay) * h / h_last
                a += correction * gain[i]
                b -= correction * gain[i - 1]
            matrix = torch.tensor([[a, b, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
            noise = sigma_next ** 2 * (1 - decay)
            h_last = h
        cov = matrix @ cov @ matrix.T
        cov[0, 0] += noise
    return float(cov[0, 0]), float(cov[0, 2])


@pytest.mark.parametrize("name, expected_fn, side", [("euler_ancestral", _expected_ancestral, 64),
                                                     ("dpmpp_2m_sde", _expected_dpmpp_2m_sde, 64)])
def test_stochastic_samplers_have_the_exact_discrete_statistics(name, expected_fn, side):
    x_hi, sigmas = _stochastic_setup(steps=12, elements_side=side)
    result = SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=11)
    expected_var, expected_cov = expected_fn([float(s) for s in sigmas])
    count = result.numel()
    y, y_hi = (result - MU).flatten().double(), (x_hi - MU).flatten().double()
    assert float(y.mean()) == pytest.approx(0.0, abs=4 * math.sqrt(expected_var / count))
    assert float(y.var()) == pytest.approx(expected_var, rel=5 * math.sqrt(2 / count))
    covariance_error = 5 * math.sqrt(expected_var * float(y_hi.var()) / count)
    assert float((y * y_hi).mean()) == pytest.approx(expected_cov, abs=covariance_error)
    # Fresh noise decorrelates the result from the start: the ODE's correlation would be 1.
    correlation = expected_cov / math.sqrt(expected_var * float(y_hi.var()))
    assert correlation < 0.5


def test_sde_statistics_approach_the_data_distribution():
    x_hi, sigmas = _stochastic_setup(steps=24, elements_side=64)
    result = SAMPLERS["dpmpp_2m_sde"](gaussian_denoiser, x_hi, sigmas, seed=5)
    assert float(result.mean()) == pytest.approx(MU, abs=0.02)
    assert float(result.var()) == pytest.approx(S ** 2, rel=0.06)
    # Under the exact reverse SDE, (x_0, x_hi) has the forward joint law: correlation S / sqrt(S² + σ_hi²).
    correlation = float(torch.corrcoef(torch.stack([result.flatten(), x_hi.flatten()]))[0, 1])
    assert correlation == pytest.approx(S / math.sqrt(S ** 2 + SIGMA_HI ** 2), abs=0.04)


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde"])
def test_stochastic_samplers_are_reproducible_per_seed(name):
    x_hi, sigmas = _stochastic_setup(steps=6, elements_side=8)
    first = SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=123)
    again = SAMPLERS[name](gaussian_denoiser, x_hi.clone(), sigmas.clone(), seed=123)
    other = SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=124)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_euler_ancestral_does_not_touch_the_global_generator():
    x_hi, sigmas = _stochastic_setup(steps=4, elements_side=8)
    state = torch.get_rng_state()
    SAMPLERS["euler_ancestral"](gaussian_denoiser, x_hi, sigmas, seed=1)
    assert torch.equal(state, torch.get_rng_state())


# --- contracts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_runs_after_every_step(name):
    x_hi, sigmas = _stochastic_setup(steps=5, elements_side=4)
    seen = []
    SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=0,
                   callback=lambda step, total, x, denoised: seen.append((step, total, x.shape, denoised.shape)))
    assert [s[0] for s in seen] == list(range(5))
    assert all(total == 5 and xs == x_hi.shape and ds == x_hi.shape for _, total, xs, ds in seen)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_cancelled_from_the_callback_stops_sampling(name):
    x_hi, sigmas = _stochastic_setup(steps=8, elements_side=4)
    calls = []

    def counting_denoiser(x, sigma):
        calls.append(float(sigma[0]))
        return gaussian_denoiser(x, sigma)

    def cancel_at_two(step, total, x, denoised):
        if step == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        SAMPLERS[name](counting_denoiser, x_hi, sigmas, seed=0, callback=cancel_at_two)
    assert len(calls) <= 5  # stopped long before the 8 steps' worth of evaluations


@pytest.mark.parametrize("name", ["uni_pc", "uni_pc_bh2", "deis", "lms", "dpmpp_2m_sde"])
def test_samplers_leave_the_callers_sigmas_alone(name):
    x_hi, sigmas = _stochastic_setup(steps=6, elements_side=4)
    before = sigmas.clone()
    SAMPLERS[name](gaussian_denoiser, x_hi, sigmas, seed=0)
    assert torch.equal(sigmas, before)
    assert float(sigmas[-1]) == 0.0  # the reference's uni_pc would have written 0.001 here


def test_unipc_single_step_follows_the_reference():
    # With two sigmas the reference's order is min(3, 0) = 0: it only evaluates the model and rescales x.
    x_hi, _ = _stochastic_setup(steps=2, elements_side=4)
    sigmas = torch.tensor([1.5, 0.7])
    result = SAMPLERS["uni_pc"](gaussian_denoiser, x_hi, sigmas, seed=0)
    torch.testing.assert_close(result, x_hi * math.sqrt(1 + 0.7 ** 2) / math.sqrt(1 + 1.5 ** 2))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_work_on_the_batch_and_keep_samples_independent(name):
    x_hi, sigmas = _stochastic_setup(steps=5, elements_side=4)
    batch = torch.cat([x_hi, x_hi * 0.5 + 0.1])
    together = SAMPLERS[name](gaussian_denoiser, batch, sigmas, seed=3)
    assert together.shape == batch.shape
    if name not in ("euler_ancestral", "dpmpp_2m_sde"):  # their noise is drawn for the batch as a whole
        alone = SAMPLERS[name](gaussian_denoiser, batch[1:], sigmas, seed=3)
        torch.testing.assert_close(together[1:], alone, atol=1e-6, rtol=0)

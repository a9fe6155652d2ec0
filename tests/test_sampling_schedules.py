"""Sigma tables, schedulers and step selection against the reference's tables (docs/numerics.md "Schedulers") and
independent formulas."""

from __future__ import annotations

import math

import pytest
import torch

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.sampling.schedules import (
    SCHEDULERS, DiscreteSchedule, compute_sigmas, discrete_sigmas, pixart_sigmas,
    scheduler_sigmas, sd1_sigmas, timestep_of,
)

# --- the 1000-step tables -----------------------------------------------------------------------------------------


def _sigmas_by_definition(betas: list[float]) -> list[float]:
    product, sigmas = 1.0, []
    for beta in betas:
        product *= 1.0 - beta
        sigmas.append(math.sqrt((1.0 - product) / product))
    return sigmas


def test_pixart_table_is_linear_betas_1e4_to_002():
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    expected = torch.tensor(_sigmas_by_definition(betas), dtype=torch.float64)
    table = discrete_sigmas("linear", 1e-4, 0.02)
    assert table.dtype == torch.float64 and table.shape == (1000,)
    torch.testing.assert_close(table, expected, rtol=1e-12, atol=0)
    assert float(table[0]) == pytest.approx(0.0100005, abs=1e-7)
    assert float(table[-1]) == pytest.approx(157.407, abs=1e-3)
    assert torch.equal(pixart_sigmas(), table)


def test_sd1_table_is_scaled_linear_betas():
    root_start, root_end = 0.00085 ** 0.5, 0.012 ** 0.5
    betas = [(root_start + (root_end - root_start) * i / 999) ** 2 for i in range(1000)]
    expected = torch.tensor(_sigmas_by_definition(betas), dtype=torch.float64)
    torch.testing.assert_close(sd1_sigmas(), expected, rtol=1e-12, atol=0)
    assert float(sd1_sigmas()[-1]) == pytest.approx(14.6146, abs=1e-4)
    assert float(sd1_sigmas()[0]) == pytest.approx(0.0291672, abs=1e-6)


def test_unknown_beta_schedule_is_a_parameter_error():
    with pytest.raises(ParameterError, match="beta_schedule"):
        discrete_sigmas("cosine")


def test_schedule_rounds_float64_table_and_its_log_once():
    table = pixart_sigmas()
    schedule = DiscreteSchedule(table)
    assert schedule.sigmas.dtype == torch.float32
    assert torch.equal(schedule.log_sigmas, table.log().float())
    # Rounding to float32 first and then taking the log is NOT the same table (docs/numerics.md "Sigma tables").
    assert not torch.equal(schedule.log_sigmas, table.float().log())


def test_timestep_of_is_nearest_in_log_space():
    table = sd1_sigmas()
    probes = torch.exp(torch.linspace(-4.0, 3.0, 301, dtype=torch.float64))
    brute_force = (probes.log()[:, None] - table.log()[None, :]).abs().argmin(dim=1)
    got = timestep_of(probes.float(), table)
    # float32 rounding may flip a probe lying (almost) exactly between two entries; nothing else may differ.
    assert (got != brute_force).sum() <= 2
    assert int(timestep_of(table[0], table)) == 0 and int(timestep_of(table[-1], table)) == 999
    assert int(timestep_of(torch.tensor([100.0, 1e-4]), table)[0]) == 999
    assert timestep_of(torch.tensor([1.0, 2.0]), table).shape == (2,)


# --- the reference's tables (docs/numerics.md "Schedulers") -----------------------------------------------------------

BASE_ROWS = [  # sampler, scheduler, steps, start, executed, head, tail (before the final 0), start t
    ("uni_pc", "simple", 12, 2, 10,
     [37.753, 20.117, 11.362, 6.784, 4.261, 2.792, 1.884, 1.285, 0.859, 0.533], [0.533], 846),
    ("uni_pc", "simple", 14, 2, 12, [44.892], [0.459], 866),
    ("dpmpp_2m_sde", "beta", 16, 3, 13,
     [54.568, 31.088, 17.379, 9.752, 5.663, 3.443, 2.180, 1.434, 0.953, 0.623, 0.380, 0.199, 0.073], [0.073], 888),
    ("dpmpp_2m_sde", "simple", 12, 2, 10, [33.806], [0.285], 833),
    ("deis", "simple", 14, 3, 11, [22.817], [0.245], 785),
    ("deis", "sgm_uniform", 17, 2, 15, [51.470], [0.205], 881),
    ("uni_pc", "simple", 15, 3, 12, [28.384], [0.426], 812),
    ("dpmpp_2m_sde", "karras", 15, 3, 12, [46.292], [0.010], 869),
    ("dpmpp_2m_sde", "beta", 14, 2, 12, [78.793], [0.089], 928),
]

REFINER_ROWS = [
    ("deis", "ddim_uniform", 11, 6, 5, [1.024, 0.752, 0.527, 0.324, 0.041], [0.041], 361),
    ("deis", "ddim_uniform", 11, 7, 4, [0.752, 0.527, 0.324, 0.041], [0.041], 271),
    ("dpmpp_2m", "normal", 22, 12, 10,
     [1.277, 1.092, 0.932, 0.791, 0.665, 0.549, 0.440, 0.333, 0.219, 0.029], [0.029], 428),
    ("deis", "ddim_uniform", 12, 7, 5, [0.932, 0.696, 0.495, 0.308, 0.041], [0.041], 333),
    ("lms", "normal", 13, 10, 3, [0.494, 0.306, 0.029], [0.029], 166),
    ("lms", "beta", 14, 10, 4, [0.613, 0.427, 0.277, 0.148], [0.148], 217),
    ("deis", "ddim_uniform", 16, 13, 3, [0.400, 0.258, 0.041], [0.041], 125),
    ("deis", "ddim_uniform", 8, 6, 2, [0.402, 0.041], [0.041], 126),
    ("dpmpp_2m", "normal", 24, 12, 12, [1.503], [0.029], 478),
]


def _check_row(table, row):
    sampler, scheduler, steps, start, executed, head, tail, start_t = row
    sigmas = compute_sigmas(table, sampler=sampler, scheduler=scheduler, steps=steps, steps_start=start)
    assert sigmas.dtype == torch.float32
    assert len(sigmas) == executed + 1
    assert float(sigmas[-1]) == 0.0
    assert [round(float(s), 3) for s in sigmas[:len(head)]] == pytest.approx(head, abs=1e-9)
    assert [round(float(s), 3) for s in sigmas[-1 - len(tail):-1]] == pytest.approx(tail, abs=1e-9)
    assert int(timestep_of(sigmas[0], table)) == start_t


@pytest.mark.parametrize("row", BASE_ROWS, ids=lambda r: f"{r[0]}-{r[1]}-{r[2]}-{r[3]}")
def test_base_default_tables(row):
    _check_row(pixart_sigmas(), row)


@pytest.mark.parametrize("row", REFINER_ROWS, ids=lambda r: f"{r[0]}-{r[1]}-{r[2]}-{r[3]}")
def test_refiner_default_tables(row):
    _check_row(sd1_sigmas(), row)


@pytest.mark.parametrize("nfactor, first, executed", [(-2, 0.527, 3), (-1, 0.752, 4), (0, 1.024, 5), (1, 1.376, 6),
                                                      (2, 1.859, 7), (3, 2.558, 8)])
def test_detail_level_rows(nfactor, first, executed):
    sigmas = compute_sigmas(sd1_sigmas(), sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=6,
                            steps_nfactor=nfactor)
    assert round(float(sigmas[0]), 3) == first
    assert len(sigmas) == executed + 1
    assert float(sigmas[-1]) == 0.0


def test_upscaler_rows_end_at_sigma_min():
    default = compute_sigmas(sd1_sigmas(), sampler="dpmpp_2m", scheduler="karras", steps=16, steps_start=11,
                             steps_end=-1)
    assert [round(float(s), 3) for s in default] == [0.280, 0.170, 0.099, 0.055, 0.029]
    painting = compute_sigmas(sd1_sigmas(), sampler="dpmpp_2m", scheduler="karras", steps=14, steps_start=11,
                              steps_end=-1)
    assert [round(float(s), 3) for s in painting] == [0.117, 0.061, 0.029]


# --- schedulers against formulas written here ---------------------------------------------------------------------


def _log_interpolated_sigma(table: torch.Tensor, t: float) -> float:
    low, high = math.floor(t), math.ceil(t)
    w = t - low
    return math.exp((1 - w) * math.log(float(table[low])) + w * math.log(float(table[high])))


@pytest.mark.parametrize("steps", [1, 2, 5, 12, 17])
def test_simple_takes_every_n_th_table_entry_from_the_top(steps):
    table = pixart_sigmas()
    expected = [float(table[999 - (i * 1000) // steps]) for i in range(steps)] + [0.0]
    torch.testing.assert_close(scheduler_sigmas(table, "simple", steps), torch.tensor(expected).float())


def test_simple_keeps_the_references_float_truncation():
    # 19 * (1000/38) evaluates to 499.99999999999994 in floating point, so the reference picks index 999-499.
    sigmas = scheduler_sigmas(pixart_sigmas(), "simple", 38)
    assert float(sigmas[19]) == float(pixart_sigmas()[500].float())


@pytest.mark.parametrize("steps", [2, 7, 20])
def test_karras_and_exponential_closed_forms(steps):
    table = pixart_sigmas()
    low, high = float(table[0]), float(table[-1])
    rho = 7.0
    karras = [(high ** (1 / rho) + i / (steps - 1) * (low ** (1 / rho) - high ** (1 / rho))) ** rho
              for i in range(steps)] + [0.0]
    torch.testing.assert_close(scheduler_sigmas(table, "karras", steps).double(), torch.tensor(karras, dtype=torch.float64),
                               rtol=2e-5, atol=0)
    exponential = [high * (low / high) ** (i / (steps - 1)) for i in range(steps)] + [0.0]
    torch.testing.assert_close(scheduler_sigmas(table, "exponential", steps).double(),
                               torch.tensor(exponential, dtype=torch.float64), rtol=2e-5, atol=0)


@pytest.mark.parametrize("steps", [3, 10, 22])
def test_normal_and_sgm_uniform_interpolate_evenly_spaced_timesteps(steps):
    table = sd1_sigmas()
    normal = [_log_interpolated_sigma(table, 999 - 999 * i / (steps - 1)) for i in range(steps)] + [0.0]
    torch.testing.assert_close(scheduler_sigmas(table, "normal", steps).double(), torch.tensor(normal, dtype=torch.float64),
                               rtol=2e-5, atol=0)
    sgm = [_log_interpolated_sigma(table, 999 - 999 * i / steps) for i in range(steps)] + [0.0]
    torch.testing.assert_close(scheduler_sigmas(table, "sgm_uniform", steps).double(), torch.tensor(sgm, dtype=torch.float64),
                               rtol=2e-5, atol=0)


@pytest.mark.parametrize("steps", [8, 10, 11])
def test_ddim_uniform_walks_from_index_one(steps):
    table = sd1_sigmas()
    stride = 1000 // steps
    indices = list(range(1, 1000, stride))[::-1]
    expected = [float(table[i]) for i in indices] + [0.0]
    got = scheduler_sigmas(table, "ddim_uniform", steps)
    assert len(got) == len(expected)  # 11 steps gives 13 values: more than steps+1 (docs/numerics.md "Schedulers")
    torch.testing.assert_close(got, torch.tensor(expected).float())


def test_beta_scheduler_known_quantiles():
    table = pixart_sigmas()
    # Beta(0.6, 0.6) quantiles of 1, .75, .5, .25 (values from scipy.stats.beta.ppf): 999·q rounded half-to-even.
    quantiles = [1.0, 0.824319621347305, 0.5, 0.17568037865269498]
    expected = [float(table[round(q * 999)]) for q in quantiles] + [0.0]
    got = scheduler_sigmas(table, "beta", 4)
    torch.testing.assert_close(got, torch.tensor(expected).float())
    assert float(got[2]) == float(table[500].float())  # the 499.5 midpoint rounds to 500


def test_beta_scheduler_drops_repeated_timesteps():
    got = scheduler_sigmas(pixart_sigmas(), "beta", 1200)
    assert len(got) < 1201
    assert bool((got[:-1] > got[1:]).all())


def test_every_scheduler_ends_in_zero_and_decreases():
    for scheduler in SCHEDULERS:
        for table in (pixart_sigmas(), sd1_sigmas()):
            sigmas = scheduler_sigmas(table, scheduler, 9)
            assert float(sigmas[-1]) == 0.0
            assert bool((sigmas[:-1] > sigmas[1:]).all()), scheduler


def test_unknown_scheduler_is_a_parameter_error():
    with pytest.raises(ParameterError, match="scheduler"):
        compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="bogus", steps=10)


# --- step selection (docs/numerics.md "Step windows") -----------------------------------------------------------------


def _full(scheduler="simple", steps=12, sampler="euler"):
    return compute_sigmas(pixart_sigmas(), sampler=sampler, scheduler=scheduler, steps=steps)


def test_default_range_is_the_whole_schedule():
    torch.testing.assert_close(_full(), scheduler_sigmas(pixart_sigmas(), "simple", 12))


def test_negative_end_counts_from_the_total():
    sigmas = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=2,
                            steps_end=-3)
    torch.testing.assert_close(sigmas, _full()[2:10])


def test_start_and_end_are_clamped():
    sigmas = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=-5,
                            steps_end=99)
    torch.testing.assert_close(sigmas, _full())


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=12, steps_start=12), dict(steps=12, steps_start=5, steps_end=5),
                                    dict(steps=12, steps_start=10, steps_nfactor=-2),
                                    dict(steps=12, steps_start=3, steps_end=-9)])
def test_empty_selection_skips_the_stage(kwargs):
    sigmas = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", **kwargs)
    assert sigmas.numel() == 0


def test_positive_nfactor_takes_from_start_then_extends_the_schedule():
    # nf 1 with start 2: start 1 of the same 12-step schedule.
    one = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=2, steps_nfactor=1)
    torch.testing.assert_close(one, _full()[1:])
    # nf 3 with start 2: start 0, and one extra step: a 13-step schedule from its beginning.
    three = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=2,
                           steps_nfactor=3)
    torch.testing.assert_close(three, _full(steps=13))


def test_negative_nfactor_moves_the_start_later():
    sigmas = compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=2,
                            steps_nfactor=-2)
    torch.testing.assert_close(sigmas, _full()[4:])


def test_unipc_drops_the_penultimate_sigma_of_a_longer_schedule():
    longer = scheduler_sigmas(pixart_sigmas(), "simple", 13)
    expected = torch.cat([longer[:-2], longer[-1:]])
    torch.testing.assert_close(_full(sampler="uni_pc"), expected)
    assert len(_full(sampler="uni_pc")) == 13


def test_ddim_uniform_keeps_the_last_steps_plus_one():
    sigmas = compute_sigmas(sd1_sigmas(), sampler="euler", scheduler="ddim_uniform", steps=11)
    torch.testing.assert_close(sigmas, scheduler_sigmas(sd1_sigmas(), "ddim_uniform", 11)[-12:])
    assert len(sigmas) == 12


def test_non_integer_step_fields_are_rejected():
    with pytest.raises(ParameterError, match="steps_start"):
        compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=12, steps_start=2.5)
    with pytest.raises(ParameterError, match="steps"):
        compute_sigmas(pixart_sigmas(), sampler="euler", scheduler="simple", steps=-1)

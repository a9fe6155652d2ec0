"""Per-stage noise (CPU generator, one draw per batch) and the noised start point
(docs/numerics.md "Noise and seeds")."""

from __future__ import annotations

import math

import pytest
import torch

from tinybreaker_ext.sampling.noise import is_max_denoise, noised_start, stage_noise
from tinybreaker_ext.sampling.schedules import DiscreteSchedule, pixart_sigmas


def test_stage_noise_matches_manual_seed_randn():
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        expected = torch.randn(2, 4, 6, 5)
    noise = stage_noise((2, 4, 6, 5), 1234)
    assert noise.dtype == torch.float32 and noise.device.type == "cpu"
    assert torch.equal(noise, expected)


def test_stage_noise_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    stage_noise((1, 4, 8, 8), 7)
    assert torch.equal(state, torch.get_rng_state())


def test_batch_noise_is_one_draw_over_the_whole_batch():
    batch = stage_noise((3, 4, 8, 8), 42)
    assert torch.equal(batch[0], stage_noise((1, 4, 8, 8), 42)[0])  # image 0 is the single-image noise
    assert not torch.equal(batch[1], stage_noise((1, 4, 8, 8), 43)[0])  # image 1 is not "seed + 1"
    assert torch.equal(batch.flatten()[4 * 8 * 8:2 * 4 * 8 * 8], stage_noise((2 * 4 * 8 * 8,), 42)[4 * 8 * 8:])


def test_start_point_below_sigma_max_adds_scaled_noise_to_the_latent():
    latent = torch.full((1, 4, 2, 2), 0.5)
    noise = stage_noise((1, 4, 2, 2), 1)
    start = noised_start(latent, noise, 37.753, 157.407)
    torch.testing.assert_close(start, latent + noise * 37.753)


def test_start_point_at_sigma_max_uses_the_variance_preserving_scale():
    sigma_max = float(DiscreteSchedule(pixart_sigmas()).sigma_max)
    noise = stage_noise((1, 4, 2, 2), 1)
    latent = torch.zeros(1, 4, 2, 2)
    start = noised_start(latent, noise, sigma_max, sigma_max)
    torch.testing.assert_close(start, noise * math.sqrt(1 + sigma_max ** 2))


@pytest.mark.parametrize("ratio, expected", [(1.0, True), (1 - 0.5e-5, True), (1 - 2e-5, False), (1.5, True),
                                             (0.5, False)])
def test_max_denoise_tolerance(ratio, expected):
    assert is_max_denoise(157.407 * ratio, 157.407) is expected

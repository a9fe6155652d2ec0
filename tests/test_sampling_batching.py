"""One PixArt forward per sampling step: cond and uncond of any token lengths, and all images of a batch, go through
the model together, with the results of separate calls (tiny PixArt, float32)."""

from __future__ import annotations

import math

import pytest
import torch

from builders.pixart import pixart_state_dict
from tinybreaker_ext.models.pixart import load_pixart
from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser, plan_context_calls
from tinybreaker_ext.sampling.noise import noised_start, stage_noise
from tinybreaker_ext.sampling.samplers import SAMPLERS
from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas

TOLERANCE = 1e-5  # relative to the largest value of the separate result
STOCHASTIC = ("euler_ancestral", "dpmpp_2m_sde")


@pytest.fixture(scope="module")
def pixart():
    return load_pixart(pixart_state_dict(hidden=144, depth=2, caption_dim=32, seed=3))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def contexts(*lengths: int, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, length, 32, generator=generator) for length in lengths]


class CountingEps:
    """``pixart.eps`` that records each call's batch, context length and whether a mask came with it."""

    def __init__(self, pixart):
        self.pixart, self.calls = pixart, []

    def __call__(self, x, timestep, context, context_mask=None):
        self.calls.append((x.shape[0], context.shape[1], context_mask is not None))
        return self.pixart.eps(x, timestep, context, context_mask)


def reference_denoiser(pixart, cond, uncond, cfg):
    """The reference's behaviour: no masks, so cond/uncond beyond the LCM rule run as two calls."""
    return CFGDenoiser(EpsDenoiser(pixart.eps, pixart_sigmas()), cond, uncond, cfg)


@pytest.mark.parametrize("cond_tokens", [77, 120, 300])
def test_cfg_runs_one_forward_for_any_prompt_length_with_the_separate_result(pixart, cond_tokens):
    cond, uncond = contexts(cond_tokens, 77)
    x = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(2)) * 14
    sigma = torch.tensor([14.0])
    eps = CountingEps(pixart)
    result = CFGDenoiser(EpsDenoiser(eps, pixart_sigmas()), cond, uncond, 3.4, accepts_context_mask=True)(x, sigma)
    reference_calls = CountingEps(pixart)
    reference = CFGDenoiser(EpsDenoiser(reference_calls, pixart_sigmas()), cond, uncond, 3.4)(x, sigma)
    assert eps.calls == [(2, cond_tokens, cond_tokens != 77)]
    assert len(reference_calls.calls) == (1 if cond_tokens == 77 else 2)  # what the reference does
    assert relative_error(result, reference) <= TOLERANCE


@pytest.mark.parametrize("lengths", [(77, 77), (77, 154), (100, 75)])
def test_the_reference_lcm_repetition_is_kept_bit_for_bit(pixart, lengths):
    cond, uncond = contexts(*lengths)
    x = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(3)) * 3
    sigma = torch.tensor([3.0])
    eps = CountingEps(pixart)
    masked = CFGDenoiser(EpsDenoiser(eps, pixart_sigmas()), cond, uncond, 4.0, accepts_context_mask=True)(x, sigma)
    assert eps.calls == [(2, math.lcm(*lengths), False)]
    assert torch.equal(masked, reference_denoiser(pixart, cond, uncond, 4.0)(x, sigma))


def test_without_mask_support_each_context_length_gets_its_own_call(pixart):
    conds, unconds = contexts(77, 120, 77), contexts(90, 90, 90, seed=2)
    x = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(4)) * 2
    sigma = torch.full((3,), 2.0)
    eps = CountingEps(pixart)
    result = CFGDenoiser(EpsDenoiser(eps, pixart_sigmas()), conds, unconds, 3.0)(x, sigma)
    assert sorted(eps.calls) == [(1, 120, False), (2, 77, False), (3, 90, False)]
    for k in range(3):
        alone = reference_denoiser(pixart, conds[k], unconds[k], 3.0)(x[k:k + 1], sigma[:1])
        assert relative_error(result[k:k + 1], alone) <= TOLERANCE


def test_context_plan_rules():
    def plan(lengths, can_mask):
        calls = plan_context_calls([torch.ones(1, length, 8) for length in lengths], can_mask=can_mask)
        return [(call.context.shape[0], call.context.shape[1], call.mask is not None) for call in calls]

    assert plan([77, 77, 154], can_mask=True) == [(3, 154, False)]  # LCM 154 = 2 x 77
    assert plan([77, 120], can_mask=True) == [(2, 120, True)]
    assert plan([77, 120, 77], can_mask=False) == [(2, 77, False), (1, 120, False)]
    masked = plan_context_calls([torch.ones(1, 2, 8), torch.ones(1, 5, 8)], can_mask=True)[0]
    assert masked.mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert masked.context[0, 2:].abs().sum() == 0
    mixed_widths = plan_context_calls([torch.ones(1, 4, 8), torch.ones(1, 4, 6)], can_mask=True)
    assert len(mixed_widths) == 2


def test_contexts_must_match_the_batch():
    denoiser = CFGDenoiser(lambda x, sigma, context: x, contexts(5, 6), None, 1.0)
    with pytest.raises(ValueError, match="2 contexts for a latent batch of 3"):
        denoiser(torch.zeros(3, 4, 2, 2), torch.ones(3))
    with pytest.raises(ValueError, match="does not divide"):
        CFGDenoiser(lambda x, sigma, context: x, torch.ones(2, 5, 8), None, 1.0)(torch.zeros(3, 4, 2, 2), torch.ones(3))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_image_k_of_a_batch_equals_the_single_image_run(pixart, name):
    """All images of a batch, cond and uncond, in one forward per step; image k as if sampled alone with seed k."""
    conds, unconds = contexts(77, 120, 300), contexts(77, 77, 90, seed=2)
    seeds = [11, 12, 13]
    sigmas = compute_sigmas(pixart_sigmas(), sampler=name, scheduler="karras", steps=4, steps_start=0)
    shape = (1, 4, 8, 6)
    starts = [noised_start(torch.zeros(shape), stage_noise(shape, seed), sigmas[0], pixart_sigmas()[-1])
              for seed in seeds]
    eps = CountingEps(pixart)
    denoiser = CFGDenoiser(EpsDenoiser(eps, pixart_sigmas()), conds, unconds, 3.4, accepts_context_mask=True)
    steps = []
    together = SAMPLERS[name](denoiser, torch.cat(starts), sigmas, seeds=seeds,
                              callback=lambda step, total, x, denoised: steps.append(step))
    assert set(eps.calls) == {(6, 300, True)}  # every call: all 3 images, cond and uncond, one padded batch
    assert len(eps.calls) <= 2 * len(steps)  # one call per denoiser evaluation (UniPC's corrector adds some)
    for k, seed in enumerate(seeds):
        alone = SAMPLERS[name](reference_denoiser(pixart, conds[k], unconds[k], 3.4), starts[k], sigmas, seed=seed)
        assert relative_error(together[k:k + 1], alone) <= TOLERANCE, k


@pytest.mark.parametrize("name", STOCHASTIC)
def test_per_image_seeds_of_one_image_equal_the_single_seed(name):
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(5)) * 5
    sigmas = torch.tensor([5.0, 2.0, 0.7, 0.2, 0.0])

    def denoiser(x, sigma):
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    assert torch.equal(SAMPLERS[name](denoiser, x, sigmas, seeds=[42]), SAMPLERS[name](denoiser, x, sigmas, seed=42))
    other = SAMPLERS[name](denoiser, x, sigmas, seeds=[43])
    assert not torch.allclose(other, SAMPLERS[name](denoiser, x, sigmas, seed=42))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_need_exactly_one_kind_of_seed(name):
    x, sigmas = torch.zeros(2, 4, 2, 2), torch.tensor([2.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="either seed"):
        SAMPLERS[name](lambda x, s: x, x, sigmas)
    with pytest.raises(ValueError, match="either seed"):
        SAMPLERS[name](lambda x, s: x, x, sigmas, seed=1, seeds=[1, 2])
    with pytest.raises(ValueError, match="3 seeds for a batch of 2"):
        SAMPLERS[name](lambda x, s: x, x, sigmas, seeds=[1, 2, 3])

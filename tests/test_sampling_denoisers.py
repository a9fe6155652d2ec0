"""Eps wrapper (input scaling, integer timesteps, x0) and classifier-free guidance with mismatched token lengths."""

from __future__ import annotations

import math

import pytest
import torch

from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser, plan_context_calls
from tinybreaker_ext.sampling.schedules import pixart_sigmas, sd1_sigmas


def test_eps_denoiser_scales_input_rounds_timestep_and_returns_x0():
    table = pixart_sigmas()
    seen = {}

    def eps_fn(x_in, timestep, context=None):
        seen.update(x_in=x_in, timestep=timestep, context=context)
        return torch.full_like(x_in, 0.25)

    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([float(table[846]), 2.0])
    denoised = EpsDenoiser(eps_fn, table)(x, sigma, context="ctx")

    expected_t = [846.0, float((table.log() - math.log(2.0)).abs().argmin())]
    assert seen["timestep"].dtype == torch.float32
    assert seen["timestep"].tolist() == expected_t
    assert seen["context"] == "ctx"
    for i in range(2):
        s = float(sigma[i])
        torch.testing.assert_close(seen["x_in"][i], x[i] / math.sqrt(s * s + 1))
        torch.testing.assert_close(denoised[i], x[i] - s * 0.25)


def test_eps_denoiser_with_exact_eps_recovers_the_clean_latent():
    # x = x0 + σ·ε, so an eps model that returns ε gives back x0 at any sigma.
    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    for s in (0.05, 1.3, 14.0):
        x = x0 + s * noise
        denoiser = EpsDenoiser(lambda x_in, t: noise, sd1_sigmas())
        torch.testing.assert_close(denoiser(x, torch.tensor([s])), x0, atol=2e-5, rtol=0)


def _attention_model(calls: list):
    """A toy model function whose result is unchanged by repeating all context tokens (like cross-attention)."""

    def model_fn(x, sigma, context):
        calls.append((x.shape[0], context.shape))
        assert not bool((context.abs().sum(-1) == 0).any()), "contexts must never be zero-padded"
        query = x.mean(dim=(2, 3))[:, None, :]  # [B, 1, C]
        keys = context[:, :, :x.shape[1]]  # [B, tokens, C]
        weights = torch.softmax(query @ keys.transpose(1, 2), dim=-1)  # [B, 1, tokens]
        attended = (weights @ keys)[:, 0]  # [B, C]
        return x * 0.5 + attended[:, :, None, None] / (1 + sigma.view(-1, 1, 1, 1))

    return model_fn


def _contexts(cond_tokens: int, uncond_tokens: int):
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(1, cond_tokens, 6, generator=generator) + 0.1,
            torch.randn(1, uncond_tokens, 6, generator=generator) + 0.1)


@pytest.mark.parametrize("cond_tokens, uncond_tokens, expected_calls", [(8, 8, 1), (5, 10, 1), (6, 8, 1),
                                                                       (77, 90, 2), (5, 21, 2)])
def test_cfg_equals_separate_evaluation(cond_tokens, uncond_tokens, expected_calls):
    cond, uncond = _contexts(cond_tokens, uncond_tokens)
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([1.5, 1.5])
    reference_calls = []
    reference_model = _attention_model(reference_calls)
    cond_pred = reference_model(x, sigma, cond.repeat(2, 1, 1))
    uncond_pred = reference_model(x, sigma, uncond.repeat(2, 1, 1))
    expected = uncond_pred + 4.0 * (cond_pred - uncond_pred)

    calls = []
    result = CFGDenoiser(_attention_model(calls), cond, uncond, cfg=4.0)(x, sigma)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)
    assert len(calls) == expected_calls
    if expected_calls == 1:
        lcm = math.lcm(cond_tokens, uncond_tokens)
        assert calls[0] == (4, torch.Size([4, lcm, 6]))


def test_lcm_batching_limit_is_four():
    def can_batch_contexts(*contexts):  # one call by repetition alone: no mask needed
        calls = plan_context_calls(list(contexts), can_mask=False)
        return len(calls) == 1 and calls[0].mask is None

    assert can_batch_contexts(torch.zeros(1, 5, 6), torch.zeros(1, 20, 6))  # lcm 20 = 4·5
    assert not can_batch_contexts(torch.zeros(1, 5, 6), torch.zeros(1, 21, 6))
    assert not can_batch_contexts(torch.zeros(1, 77, 6), torch.zeros(1, 90, 6))  # LCM 6930 > 4 x 77
    assert can_batch_contexts(torch.zeros(1, 77, 6), torch.zeros(1, 154, 6))
    assert not can_batch_contexts(torch.zeros(1, 8, 6), torch.zeros(1, 8, 7))


def test_cfg_one_skips_the_uncond_pass():
    cond, uncond = _contexts(4, 7)
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(5))
    calls = []
    result = CFGDenoiser(_attention_model(calls), cond, uncond, cfg=1.0)(x, torch.tensor([0.7]))
    assert len(calls) == 1 and calls[0] == (1, torch.Size([1, 4, 6]))
    torch.testing.assert_close(result, _attention_model([])(x, torch.tensor([0.7]), cond))


def test_cfg_batched_call_puts_uncond_first():
    cond, uncond = torch.ones(1, 3, 6), -torch.ones(1, 3, 6)
    seen = []

    def model_fn(x, sigma, context):
        seen.append(context[:, 0, 0].tolist())
        return x + context[:, :1, :1, None].expand(-1, x.shape[1], x.shape[2], x.shape[3])

    x = torch.zeros(2, 4, 2, 2)
    result = CFGDenoiser(model_fn, cond, uncond, cfg=2.0)(x, torch.tensor([1.0, 1.0]))
    assert seen == [[-1.0, -1.0, 1.0, 1.0]]
    torch.testing.assert_close(result, torch.full_like(x, -1 + 2 * (1 - (-1))))


def test_eps_and_cfg_compose_into_a_sampler_denoiser():
    table = sd1_sigmas()
    seen_t = []

    def eps_fn(x_in, timestep, context):
        seen_t.append(timestep)
        return x_in * context.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    cond, uncond = torch.full((1, 4, 8), 2.0), torch.full((1, 6, 8), 1.0)
    denoiser = CFGDenoiser(EpsDenoiser(eps_fn, table), cond, uncond, cfg=3.0)
    x = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([0.8])
    out = denoiser(x, sigma)
    scale = 0.8 / math.sqrt(0.8 ** 2 + 1)
    expected_cond, expected_uncond = x - scale * x * 2.0, x - scale * x * 1.0
    torch.testing.assert_close(out, expected_uncond + 3.0 * (expected_cond - expected_uncond), atol=1e-5, rtol=1e-5)
    assert all(float(t[0]) == float(t[-1]) and float(t[0]).is_integer() for t in seen_t)

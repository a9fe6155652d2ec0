"""The `tinybreaker` refine in a WebUI (first_pass.refine_with_reference_sampler): the style's sampler and window on
the host's CFG denoiser, with the host's progress, Interrupt, previews, scripts and Forge's sampling hooks."""

import pytest
import torch

from builders.fake_hosts import MANAGED_HOSTS, call_names, calls_named
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.sampling.noise import stage_noise

# PHOTO: base 14 steps from 2, so base_steps=5 runs 3; its refiner is deis / ddim_uniform 11 steps from 7 (4 steps).
ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5))
BASE, REFINE = 3, 4


def test_the_styles_window_runs_on_the_hosts_cfg_denoiser(tb_host):
    p = tb_host.make_p(batch_size=2, seed=3)
    tb_host.run(p, ARGS)
    calls = tb_host.sampling.calls
    assert len(calls) == REFINE and [call["step"] for call in calls] == list(range(REFINE))
    assert [round(float(call["sigma"][0]), 3) for call in calls] == [0.752, 0.527, 0.324, 0.041]
    assert all(call["cond_scale"] == 2.5 and call["is_hr_pass"] is False for call in calls)  # PHOTO's refine CFG
    assert calls[0]["x"].shape == (2, 4, 8, 8)  # the whole batch at once
    assert "sampler.sample_img2img" not in call_names()


def test_the_refine_noise_is_the_references_refine_seed_for_every_image(tb_host):
    p = tb_host.make_p(batch_size=2, seed=3)
    seen = {}
    tb_host.runner.on_before_every_sampling = lambda p, kwargs: seen.update(kwargs)
    tb_host.run(p, script_args(TinyBreakerParams(enabled=True, base_steps=5, image_shift=4)))
    expected = stage_noise((1, 4, 8, 8), 1 + 4)  # PHOTO's refiner seed 1, shifted by 4
    assert torch.equal(seen["noise"], torch.cat([expected, expected]))
    first = tb_host.sampling.calls[0]
    assert torch.allclose(first["x"], seen["x"] + seen["noise"] * first["sigma"].view(-1, 1, 1, 1), atol=1e-6)


def test_progress_counts_each_refine_step_after_the_base(tb_host):
    p = tb_host.make_p(n_iter=2)
    tb_host.run(p, ARGS)
    assert tb_host.shared.total_tqdm.total == (BASE + REFINE) * 2
    assert tb_host.shared.total_tqdm.updates == (BASE + REFINE) * 2
    assert tb_host.state.job_no == tb_host.state.job_count == 4
    assert len(calls_named("store_latent")) == REFINE * 2  # the host's own live-preview hook, every step


def test_interrupt_during_the_refine_stops_within_one_step_and_keeps_the_latent(tb_host):
    state = tb_host.state
    # Interrupt pressed while the second step's model call runs
    tb_host.sampling.hooks.append(lambda x, sigma, denoised: (state.interrupt() if len(
        calls_named("cfg_denoiser.forward")) == 1 else None) or denoised)
    (output,) = tb_host.run(tb_host.make_p(n_iter=2), ARGS)
    assert len(tb_host.sampling.calls) == 2  # the second step finished; the third was refused
    assert output.shape == (1, 4, 8, 8) and torch.isfinite(output).all()
    assert len(tb_host.engine.base_calls) == 1  # the job ended: the second batch never started


def test_forge_sampling_hooks_wrap_the_refine(make_tb_host):
    for host in MANAGED_HOSTS:
        env = make_tb_host(host)
        env.run(env.make_p(), ARGS)
        names = [name for name in call_names() if name in ("sampling_prepare", "cfg_denoiser.forward",
                                                          "sampling_cleanup")]
        assert names == ["sampling_prepare"] + ["cfg_denoiser.forward"] * REFINE + ["sampling_cleanup"], host


@pytest.mark.parametrize("mode", ["tinybreaker", "webui"])
def test_detail_level_none_skips_the_refine_in_both_modes(tb_host, mode):
    tb_host.run(tb_host.make_p(prompt="a cat --detail-level none"), script_args(TinyBreakerParams(
        enabled=True, base_steps=5, refine_sampler=mode)))
    assert "cfg_denoiser.forward" not in call_names() and "sampler.sample_img2img" not in call_names()

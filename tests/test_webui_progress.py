"""Job count and progress bar, Interrupt/Skip during our base stage, live previews, and Hires fix on top."""

import pytest
import torch

from builders.fake_host_sampling import decode_latent_batch
from builders.fake_hosts import call_names, calls_named
from builders.fixtures_webui import TRANSCODE_SCALE, TRANSCODE_SHIFT, FakeEngine
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.webui import script_logic

# PHOTO's base window starts at step 2, so base_steps=5 runs 3 steps per image; the refine runs 2 host steps.
ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_steps=2, refine_strength=0.3,
                                     refine_sampler="webui"))
BASE, REFINE = 3, 2


@pytest.mark.parametrize("n_iter, batch_size", [(1, 1), (3, 2)])
def test_each_batch_counts_as_two_jobs(tb_host, n_iter, batch_size):
    p = tb_host.make_p(n_iter=n_iter, batch_size=batch_size)
    tb_host.state.begin()
    script_logic.process(p, *ARGS)
    assert tb_host.state.job_count == n_iter * 2
    assert tb_host.shared.total_tqdm.total == (BASE * batch_size + REFINE) * n_iter
    script_logic.postprocess(p)

    tb_host.run(tb_host.make_p(n_iter=n_iter, batch_size=batch_size), ARGS)
    assert tb_host.state.job_no == tb_host.state.job_count == n_iter * 2  # monotonic, ends full


def test_hires_fix_makes_it_three_jobs(tb_host):
    p = tb_host.make_p(n_iter=2, enable_hr=True, hr_second_pass_steps=4, hr_upscaler="Latent")
    tb_host.run(p, ARGS)
    assert tb_host.state.job_count == 2 * 3 and tb_host.state.job_no == 6
    assert tb_host.shared.total_tqdm.total == (BASE + REFINE + 4) * 2


def test_a_count_set_by_a_grid_script_is_multiplied(tb_host):
    tb_host.state.begin()
    tb_host.state.job_count = 6  # X/Y/Z plot: cells × n_iter, set before each process_images
    script_logic.process(tb_host.make_p(), *ARGS)
    assert tb_host.state.job_count == 12


def test_upscale_rerun_keeps_the_hosts_own_count(tb_host):
    p = tb_host.make_p(enable_hr=True, hr_upscaler="Latent")
    p.txt2img_upscale = True
    p.firstpass_image = object()
    tb_host.run(p, ARGS)
    assert tb_host.state.job_count == 2  # Hires fix's own bookkeeping: one image, its pass doubled


def test_interrupt_stops_the_base_stage_within_one_step(tb_host):
    engine, state = tb_host.engine, tb_host.state
    engine.before_step = lambda step: state.interrupt() if step == 1 else None
    p = tb_host.make_p(n_iter=2)
    (output,) = tb_host.run(p, ARGS)
    assert engine.steps_run == 2  # step 1 was asked to run, the callback after it stopped the stage
    assert len(engine.base_calls) == 1  # the host loop ends the job
    assert "create_sampler" not in call_names() and "sampler.sample_img2img" not in call_names()
    # The latest estimate (step 1 of 3: x · 2/3) goes through the transcoder and is returned, cropped.
    x = FakeEngine.latent_for(1, 64, 64)
    assert torch.allclose(output, (x * 2 / 3) * TRANSCODE_SCALE + TRANSCODE_SHIFT)


def test_skip_stops_the_base_stage_too(tb_host):
    engine, state = tb_host.engine, tb_host.state
    engine.before_step = lambda step: state.skip() if step == 0 else None
    tb_host.run(tb_host.make_p(), ARGS)
    assert engine.steps_run == 1


def test_live_previews_follow_the_hosts_settings(tb_host):
    tb_host.shared.opts.show_progress_every_n_steps = 1
    tb_host.run(tb_host.make_p(), ARGS)
    assert tb_host.engine.previews == BASE and tb_host.state.current_image is not None

    tb_host.shared.opts.live_previews_enable = False
    tb_host.engine.previews = 0
    tb_host.run(tb_host.make_p(), ARGS)
    assert tb_host.engine.previews == 0


def test_a_failing_preview_does_not_stop_the_generation(tb_host):
    def broken_preview(denoised):
        raise RuntimeError("no decoder")

    tb_host.engine.preview_image = broken_preview
    tb_host.run(tb_host.make_p(), ARGS)
    assert "sampler.sample_img2img" in call_names()


@pytest.mark.parametrize("upscaler, decoded", [("Latent", False), ("R-ESRGAN 4x+", True)])
def test_hires_fix_continues_from_the_refined_latent(tb_host, upscaler, decoded):
    p = tb_host.make_p(batch_size=2, enable_hr=True, hr_upscaler=upscaler)
    (output,) = tb_host.run(p, ARGS)
    call = calls_named("sampler.sample_img2img")[0][1]
    refined = call["x"] * (1 - 0.3) + call["noise"] * 0.3 * 0.1
    ((_, samples, decoded_samples),) = calls_named("sample_hr_pass")
    assert torch.allclose(samples, refined)
    if decoded:  # pixel upscalers get the decoded images, as the host's own first pass gives them
        assert calls_named("decode_latent_batch")[0][1] == (2, 4, 8, 8)
        assert decoded_samples.shape == (2, 3, 64, 64) and decoded_samples.dtype == torch.float32
        raw = torch.stack(list(decode_latent_batch(None, refined)))  # the decoder's [-1, 1]
        # Neo's sample() converts to [0, 1] before its sample_hr_pass; the other hosts convert inside it
        expected = ((raw + 1) / 2).clamp(0, 1) if tb_host.name == "neo" else raw
        assert torch.allclose(decoded_samples, expected, atol=1e-6)
    else:
        assert decoded_samples is None
    assert len(output) == 2  # what sample_hr_pass returned


def test_hires_fix_runs_even_without_refine_steps(tb_host):
    args = script_args(TinyBreakerParams(enabled=True, base_steps=5, detail_level=-10))  # 'none': no refine
    p = tb_host.make_p(enable_hr=True, hr_upscaler="Latent")
    tb_host.run(p, args)
    assert "sampler.sample_img2img" not in call_names() and "cfg_denoiser.forward" not in call_names()
    assert "sample_hr_pass" in call_names()


def test_another_hires_checkpoint_is_rejected_clearly(tb_host):
    fastapi = pytest.importorskip("fastapi")
    p = tb_host.make_p(enable_hr=True, hr_checkpoint_name="other.safetensors")
    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(p, ARGS)
    assert caught.value.status_code == 422
    assert "'Hires checkpoint'" in caught.value.detail and "Use same checkpoint" in caught.value.detail
    assert "other.safetensors" in caught.value.detail
    assert "engine.base" not in call_names()

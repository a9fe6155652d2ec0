"""The Script hooks and the p.sample replacement, on each host's stand-in (docs/hosts.md "The first pass")."""

import torch

from builders.fake_hosts import MANAGED_HOSTS, StableDiffusionProcessingTxt2Img, call_names, calls_named, seed_noise
from builders.fixtures_webui import TRANSCODE_SCALE, TRANSCODE_SHIFT, FakeEngine
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.webui import script_logic

# PHOTO's base stage starts at step 2 (styles_v03.ini), so base_steps=5 runs steps 2..4: 3 steps per image.
ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_strength=0.4, refine_steps=3, refine_cfg=3.0,
                                     refine_sampler="webui"))
BASE_STEPS_RUN = 3
DISABLED = script_args(TinyBreakerParams())


def expected_first_pass(seeds, width, height):
    """The fake engine's base latent at PixArt's size (multiples of 16), transcoded and cropped to the image."""
    base_w, base_h = -(-width // 16) * 16, -(-height // 16) * 16
    latents = torch.cat([FakeEngine.latent_for(seed, base_w, base_h) for seed in seeds])
    return (latents * TRANSCODE_SCALE + TRANSCODE_SHIFT)[:, :, : height // 8, : width // 8]


def sampler_call():
    (entry,) = calls_named("sampler.sample_img2img")
    return entry[1]


def test_disabled_leaves_the_hosts_sample_alone(tb_host):
    p = tb_host.make_p()
    assert script_logic.process(p, *DISABLED) is None
    assert "sample" not in p.__dict__
    (output,) = tb_host.run(p, DISABLED)
    assert "original_sample" in call_names() and "engine.base" not in call_names()
    assert torch.equal(output, torch.full((1, 4, 8, 8), 7.0))


def test_enabled_installs_the_replacement_per_batch_and_postprocess_removes_it(tb_host):
    import json

    p = tb_host.make_p()
    plan = script_logic.process(p, *ARGS)
    assert plan is not None and plan.error is None
    # After process(), p holds only JSON data from us (the Distributed extension json.dumps p.__dict__)
    assert "sample" not in p.__dict__
    json.dumps(p.extra_generation_params)
    script_logic.process_batch(p)
    assert "sample" in p.__dict__ and p.sample != StableDiffusionProcessingTxt2Img.sample.__get__(p)
    script_logic.process_batch(p)  # the next batch keeps the same replacement
    script_logic.postprocess(p)
    assert "sample" not in p.__dict__
    assert p.sample.__func__ is StableDiffusionProcessingTxt2Img.sample
    assert not [name for name in p.__dict__ if name.startswith("_tinybreaker")]


def test_another_extensions_replacement_is_put_back_after_the_job(tb_host):
    p = tb_host.make_p()
    theirs = p.sample = lambda **kwargs: "theirs"
    script_logic.process(p, *ARGS)
    script_logic.process_batch(p)
    assert p.sample is not theirs
    script_logic.postprocess(p)
    assert p.sample is theirs


def test_upscale_button_reruns_fall_back_to_the_hosts_sample(tb_host):
    for marker in ({"firstpass_image": object()}, {"txt2img_upscale": True}):
        p = tb_host.make_p(enable_hr=True)
        for name, value in marker.items():
            setattr(p, name, value)
        tb_host.run(p, ARGS)
        assert "original_sample" in call_names() and "engine.base" not in call_names(), marker
        tb_host.tree["modules.shared"].state.begin()


def test_hook_order_inside_the_replacement(tb_host):
    p = tb_host.make_p(width=72, height=64, denoising_strength=0.7)
    state, total_tqdm = tb_host.state, tb_host.shared.total_tqdm
    seen_progress = []
    tb_host.engine.before_step = lambda step: seen_progress.append(
        (step, state.sampling_step, state.sampling_steps, total_tqdm.updates))
    (output,) = tb_host.run(p, ARGS)

    names = [name for name in call_names() if name in (
        "engine.base", "engine.transcode", "state.nextjob", "create_sampler", "process_before_every_sampling",
        "sampler.sample_img2img", "sd_models.apply_token_merging")]
    forge_like = tb_host.name in MANAGED_HOSTS
    assert names == ["engine.base", "engine.transcode", "state.nextjob"] \
        + (["sd_models.apply_token_merging"] if forge_like else []) \
        + ["create_sampler", "process_before_every_sampling", "sampler.sample_img2img", "state.nextjob"]
    # The progress callback ran once per base step, before each next step, with the host's counters.
    assert seen_progress == [(step, step, BASE_STEPS_RUN, step) for step in range(BASE_STEPS_RUN)]
    assert total_tqdm.updates == BASE_STEPS_RUN
    assert calls_named("create_sampler")[0][1] == "Euler"
    assert calls_named("process_before_every_sampling")[0][1] == ["c", "noise", "uc", "x"]

    call = sampler_call()
    assert call["steps"] == 3 and call["denoising_strength"] == 0.4 and call["is_hr_pass"] is False
    # the host's own text encoding of this batch's prompts, which process_batch turned into the style's refine texts
    (cond_call,) = calls_named("prompt_parser.get_multicond_learned_conditioning")
    (uncond_call,) = calls_named("prompt_parser.get_learned_conditioning")
    assert cond_call[1] == [p.prompts[0]] and uncond_call[1] == [p.negative_prompts[0]]
    assert call["conditioning"].batch[0][0].schedules[0].cond.shape == (77, 8)
    assert torch.equal(call["x"], expected_first_pass([1], 72, 64))
    assert torch.equal(call["noise"], seed_noise([1], (4, 8, 9)))  # the host RNG's seed noise
    assert torch.equal(call["image_conditioning"], torch.zeros(1, 5, 1, 1))
    assert p.denoising_strength == 0.7 and p.is_hr_pass is False  # Hires fix's fields are back
    assert torch.allclose(output, call["x"] * 0.6 + call["noise"] * 0.04, atol=1e-6)  # the host sampler's result


def test_is_hr_pass_is_off_during_the_refine_and_restored_after(tb_host):
    p = tb_host.make_p()
    p.is_hr_pass = True
    tb_host.run(p, ARGS)
    assert sampler_call()["is_hr_pass"] is False and p.is_hr_pass is True


def test_forge_objects_are_reset_before_scripts_patch_them(make_tb_host):
    for host in MANAGED_HOSTS:
        env = make_tb_host(host)

        def patch_unet(p, kwargs):  # what a Forge built-in (FreeU, dynamic thresholding…) does in this hook
            p.sd_model.forge_objects.unet = "patched(" + p.sd_model.forge_objects.unet + ")"

        env.runner.on_before_every_sampling = patch_unet
        p = env.make_p(token_merging_ratio=0.3)
        env.run(p, ARGS)
        model = p.sd_model
        call = sampler_call()
        assert call["forge_objects"] is not model.forge_objects_after_applying_lora  # a copy, not the original
        assert call["unet"] == "patched(tome(unet-with-lora, 0.3))"
        assert model.forge_objects_after_applying_lora.unet == "unet-with-lora"


def test_modified_noise_from_a_script_is_used_once(make_tb_host):
    for host in MANAGED_HOSTS:
        env = make_tb_host(host)
        replacement = torch.full((1, 4, 8, 8), 0.5)
        env.runner.on_before_every_sampling = lambda p, kwargs: setattr(p, "modified_noise", replacement)
        p = env.make_p()
        env.run(p, ARGS)
        assert torch.equal(sampler_call()["noise"], replacement)
        assert p.modified_noise is None


def test_a_batch_of_two_gives_the_engine_both_seeds(tb_host):
    p = tb_host.make_p(batch_size=2, seed=40)
    (output,) = tb_host.run(p, ARGS)
    (base_call,) = tb_host.engine.base_calls
    assert base_call["seeds"] == [40, 41]
    assert len(base_call["texts"]) == 2 and base_call["texts"][0].endswith("Intricate, with soft bokeh")
    assert "a cat" in base_call["texts"][0]
    assert (base_call["width"], base_call["height"]) == (64, 64)
    assert torch.equal(sampler_call()["x"], expected_first_pass([40, 41], 64, 64))
    assert output.shape == (2, 4, 8, 8)
    assert tb_host.state.sampling_steps == BASE_STEPS_RUN  # both images in each step: one bar of the window's steps
    assert tb_host.shared.total_tqdm.updates == BASE_STEPS_RUN


def test_image_shift_changes_only_the_refine_noise(make_tb_host):
    env = make_tb_host("a1111")
    env.run(env.make_p(batch_size=2, seed=40), ARGS)
    plain = sampler_call()
    plain_base = env.engine.base_calls[-1]

    shifted_args = script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_strength=0.4, refine_steps=3,
                                                 refine_cfg=3.0, image_shift=7, refine_sampler="webui"))
    env.state.begin()
    env.engine.base_calls.clear()
    from builders.fake_hosts import CALLS

    CALLS.clear()
    env.run(env.make_p(batch_size=2, seed=40), shifted_args)
    shifted = sampler_call()
    assert env.engine.base_calls[-1]["seeds"] == plain_base["seeds"] == [40, 41]
    assert torch.equal(shifted["x"], plain["x"])
    assert torch.equal(shifted["noise"], seed_noise([47, 48], (4, 8, 8)))
    assert not torch.equal(shifted["noise"], plain["noise"])
    # A new host RNG with the shifted seeds, shaped like the latent (as the host's own hires pass does).
    assert calls_named("ImageRNG")[-1][1:] == ((4, 8, 8), [47, 48])


def test_a_p_reused_after_a_failed_job_gets_no_stale_replacement(tb_host):
    p = tb_host.make_p()
    script_logic.process(p, *ARGS)  # the job then fails: postprocess never runs
    assert script_logic.process(p, *DISABLED) is None  # a later job with TinyBreaker off
    assert "sample" not in p.__dict__
    tb_host.run(p, DISABLED)
    assert "original_sample" in call_names() and "engine.base" not in call_names()


def test_scripts_may_update_the_first_pass_latent_in_place(tb_host):
    # A1111 samples under no_grad only: a tensor made in inference mode would refuse in-place updates there.
    tb_host.runner.on_before_every_sampling = lambda p, kwargs: kwargs["x"].mul_(1.0)
    tb_host.run(tb_host.make_p(), ARGS)
    assert not sampler_call()["x"].is_inference()

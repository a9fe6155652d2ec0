"""The Tiny Upscaler in a WebUI: the host's CFG denoiser does the tile denoising, the host's VAE decodes the refined
latent, the TinyBreaker checkpoint's TAESD encodes/decodes the enlarged image (fake A1111, Forge and reForge)."""

import types

import pytest
import torch

from builders.fake_host_sampling import fake_unet, install_host_sampling, text_embedding
from builders.fake_hosts import HOSTS, StableDiffusionProcessingTxt2Img, calls_named, installed_host
from tinybreaker_ext.errors import Cancelled, ModelFileError
from tinybreaker_ext.pipeline import TinyBreakerPipeline
from tinybreaker_ext.stage_params import StageParams
from tinybreaker_ext.upscaler import tiny_upscale, tiny_vae_decode_fn, tiny_vae_encode_fn, upscaler_vae

NEGATIVE = "(low quality, worst quality, manga:1.8)"


def upscaler_stage(**changes) -> StageParams:
    values = dict(prompt="", negative=NEGATIVE, sampler="dpmpp_2m", scheduler="karras", steps=16, steps_start=11,
                  steps_end=-1, cfg=4.0, noise_seed=1, extra_noise=0.6)
    values.update(changes)
    return StageParams(**values)


def expected_cfg(x, sigma, prompt, negative, scale):
    cond = fake_unet(x, sigma, text_embedding(prompt)[None])
    uncond = fake_unet(x, sigma, text_embedding(negative)[None])
    return uncond + (cond - uncond) * scale


@pytest.fixture(scope="module")
def pipelines(tiny_model_folder):
    _folder, paths = tiny_model_folder
    return {key: TinyBreakerPipeline(paths[key], paths["t5"]) for key in ("checkpoint1", "checkpoint0")}


@pytest.fixture(params=HOSTS)
def webui(request, tmp_path):
    from tinybreaker_ext.webui.host import get_host

    with installed_host(request.param, str(tmp_path)) as tree:
        env = install_host_sampling(tree, request.param)
        p = StableDiffusionProcessingTxt2Img(sd_model=tree["modules.shared"].sd_model, width=48, height=32)
        yield types.SimpleNamespace(name=request.param, tree=tree, env=env, p=p, host=get_host(),
                                    state=tree["modules.shared"].state)


def make_denoiser(webui, sigmas):
    from tinybreaker_ext.webui.host_denoiser import HostDenoiser, host_conditioning

    cond, uncond = host_conditioning(webui.p, "a house", NEGATIVE, len(sigmas) - 1, 64, 64)
    return HostDenoiser(webui.p, cond, uncond, 4.0, sigmas)


def test_host_denoiser_is_the_hosts_cfg_denoiser_with_our_prompts(webui):
    sigmas = torch.tensor([0.28, 0.17, 0.099])
    denoiser = make_denoiser(webui, sigmas)
    x = torch.randn(1, 4, 5, 6)
    webui.p.is_hr_pass = True
    with denoiser.active(x):
        out = denoiser(x, torch.tensor([0.17]))
    assert torch.allclose(out, expected_cfg(x, torch.tensor([0.17]), "a house", NEGATIVE, 4.0), atol=1e-6)
    call = webui.env.calls[-1]
    assert call["step"] == 1 and call["total_steps"] == 2  # σ1 is the second sweep of two
    assert call["is_hr_pass"] is False and webui.p.is_hr_pass is True  # main CFG while sampling, then restored
    assert call["p"] is webui.p and call["image_cond_shape"] == (1, 5, 1, 1)
    assert calls_named("create_sampler")[-1][1] == "Euler"
    negative_call = calls_named("prompt_parser.get_learned_conditioning")[-1]
    assert negative_call[1] == [NEGATIVE] and negative_call[3] is True


def test_extension_hooks_inside_the_cfg_denoiser_apply_to_tiles(webui):
    webui.env.hooks.append(lambda x, sigma, denoised: denoised + 1.0)
    denoiser = make_denoiser(webui, torch.tensor([0.28, 0.17]))
    x = torch.randn(1, 4, 3, 3)
    with denoiser.active(x):
        out = denoiser(x, torch.tensor([0.28]))
    assert torch.allclose(out, expected_cfg(x, torch.tensor([0.28]), "a house", NEGATIVE, 4.0) + 1.0, atol=1e-6)


def test_forge_hosts_load_the_unet_for_sampling_and_release_it(webui):
    denoiser = make_denoiser(webui, torch.tensor([0.28, 0.17]))
    with denoiser.active(torch.zeros(1, 4, 8, 8)):
        assert len(calls_named("sampling_prepare")) == (1 if webui.name != "a1111" else 0)
        assert not calls_named("sampling_cleanup")
    assert len(calls_named("sampling_cleanup")) == (1 if webui.name != "a1111" else 0)
    if webui.name != "a1111":
        assert calls_named("sampling_prepare")[0][2] == (1, 4, 8, 8)


def test_interrupt_in_the_host_becomes_cancelled(webui):
    denoiser = make_denoiser(webui, torch.tensor([0.28, 0.17]))
    webui.state.interrupted = True
    with pytest.raises(Cancelled), denoiser.active(torch.zeros(1, 4, 2, 2)):
        denoiser(torch.zeros(1, 4, 2, 2), torch.tensor([0.28]))


def test_run_tiny_upscaler_matches_the_core_with_the_hosts_model(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    samples = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    total_tqdm = webui.tree["modules.shared"].total_tqdm
    counted_before = total_tqdm.updates
    result = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 2.0)

    assert getattr(result, "already_decoded", False) and len(result) == 2
    assert all(image.shape == (3, 64, 96) for image in result)
    assert calls_named("decode_latent_batch") == [("decode_latent_batch", (2, 4, 4, 6))]
    assert len(webui.env.calls) == 2 * 4  # images × steps, one tile each
    assert {call["cond_scale"] for call in webui.env.calls} == {4.0}
    assert calls_named("prompt_parser.get_multicond_learned_conditioning")[-1][1] == [""]  # style prompt only
    if webui.name != "a1111":  # the LoRA-applied UNet, not the refine pass's patched or a stale one
        assert {call["unet"] for call in webui.env.calls} == {"unet-with-lora"}
        assert calls_named("sampling_prepare")[0][1] == "unet-with-lora"

    host_images = (torch.tanh(torch.nn.functional.interpolate(samples[:, :3], scale_factor=8)) + 1) / 2
    vae = upscaler_vae(pipelines["checkpoint1"])
    expected = tiny_upscale(host_images, scale_by=2.0, encode_fn=tiny_vae_encode_fn(vae),
                            decode_fn=tiny_vae_decode_fn(vae), stage=upscaler_stage(),
                            denoiser=lambda x, sigma: expected_cfg(x, sigma, "", NEGATIVE, 4.0))
    assert torch.allclose(torch.stack(list(result)), expected * 2 - 1, atol=1e-5)
    assert webui.state.textinfo == "TinyBreaker: upscaler" and webui.state.sampling_steps == 8
    assert total_tqdm.updates == counted_before  # tiles are not in the total the host's bar was given


def test_already_decoded_images_are_upscaled_without_a_second_decode(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    decoded = [torch.rand(3, 24, 40) * 2 - 1]
    result = run_tiny_upscaler(webui.p, decoded, pipelines["checkpoint1"], webui.host, upscaler_stage(steps_start=14),
                               1.5)
    assert [tuple(image.shape) for image in result] == [(3, 36, 60)]
    assert not calls_named("decode_latent_batch")


def test_interrupt_during_the_upscaler_keeps_the_original_images(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    def interrupt_after_first_tile(x, sigma, denoised):
        webui.state.interrupted = True
        return denoised

    webui.env.hooks.append(interrupt_after_first_tile)
    samples = torch.randn(1, 4, 4, 6)
    result = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 2.0)
    assert [tuple(image.shape) for image in result] == [(3, 32, 48)]
    assert len(webui.env.calls) == 1


def test_the_enhancer_returns_the_original_size_re_detailed(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    samples = torch.randn(1, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    upscaled = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 2.0)
    enhanced = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 2.0,
                                 mode="enhancer")
    assert [tuple(image.shape) for image in enhanced] == [(3, 32, 48)]
    assert torch.equal(enhanced[0], torch.nn.functional.interpolate(upscaled[0][None], size=(32, 48),
                                                                    mode="nearest")[0])
    host_image = torch.tanh(torch.nn.functional.interpolate(samples[:, :3], scale_factor=8))[0]
    assert not torch.allclose(enhanced[0], host_image, atol=1e-2)  # re-detailed, not the refined image as it was


def test_a_hosts_upscaler_enlarges_before_the_tile_refine(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    samples = torch.randn(1, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    plain = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 1.5)
    with_model = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 1.5,
                                   upscale_model="R-ESRGAN 4x+")
    assert [tuple(image.shape) for image in with_model] == [(3, 48, 72)]
    (call,) = calls_named("upscaler.upscale")
    assert call[1:] == ((48, 32), 1.5, "/models/RealESRGAN/RealESRGAN_x4plus.pth")  # the host's own call
    assert not torch.allclose(with_model[0], plain[0], atol=1e-3)
    enhanced = run_tiny_upscaler(webui.p, samples, pipelines["checkpoint1"], webui.host, upscaler_stage(), 1.5,
                                 mode="enhancer", upscale_model="r-esrgan 4x+")
    assert [tuple(image.shape) for image in enhanced] == [(3, 32, 48)]


def test_an_unknown_upscaler_is_refused_with_the_hosts_names(webui, pipelines):
    from tinybreaker_ext.errors import ParameterError
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    with pytest.raises(ParameterError) as error:
        run_tiny_upscaler(webui.p, torch.zeros(1, 4, 4, 6), pipelines["checkpoint1"], webui.host, upscaler_stage(),
                          2.0, upscale_model="None at all")
    assert error.value.field == "upscale_model" and "'Lanczos', 'R-ESRGAN 4x+'" in str(error.value)
    assert not webui.env.calls


def test_prototype0_is_refused_before_any_sampling(webui, pipelines):
    from tinybreaker_ext.webui.upscale import run_tiny_upscaler

    with pytest.raises(ModelFileError, match="prototype0"):
        run_tiny_upscaler(webui.p, torch.zeros(1, 4, 4, 6), pipelines["checkpoint0"], webui.host, upscaler_stage(),
                          2.0)
    assert not webui.env.calls

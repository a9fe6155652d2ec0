"""An SDXL checkpoint loaded in the WebUI refines PixArt's latent as it is (PixArt composes in SDXL's latent space):
no transcoder, the host's own SDXL conditioning, the plan's refine numbers; other families are refused clearly."""

import pytest
import torch

from builders.fake_hosts import call_names, calls_named, make_sd_model
from builders.fixtures_webui import FakeEngine
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams

ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5))


def use_sdxl(env):
    env.shared.sd_model = make_sd_model(env.name, is_sd1=False, is_sdxl=True)


@pytest.mark.parametrize("mode", ["tinybreaker", "webui"])
def test_an_sdxl_checkpoint_refines_the_base_latent_without_the_transcoder(tb_host, mode):
    use_sdxl(tb_host)
    p = tb_host.make_p(width=72, height=64, seed=3)
    (output,) = tb_host.run(p, script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_sampler=mode)))
    assert "engine.base" in call_names() and "engine.transcode" not in call_names()
    expected_start = FakeEngine.latent_for(3, 80, 64)[:, :, :8, :9]  # the base latent, cropped to 72x64
    if mode == "tinybreaker":
        first = tb_host.sampling.calls[0]
        noise = first["x"] - expected_start
        assert first["x"].shape == (1, 4, 8, 9) and noise.abs().max() > 0  # noised from the base latent itself
        assert len(tb_host.sampling.calls) == 4  # PHOTO's refine window, as for SD1
    else:
        (call,) = [entry[1] for entry in calls_named("sampler.sample_img2img")]
        assert torch.equal(call["x"], expected_start)
    assert p.extra_generation_params["TinyBreaker refiner"] == "SDXL"
    assert output.shape == (1, 4, 8, 9)


def test_the_refiner_family_is_written_for_sd1_too(tb_host):
    p = tb_host.make_p()
    tb_host.run(p, ARGS)
    assert p.extra_generation_params["TinyBreaker refiner"] == "SD1" and "engine.transcode" in call_names()


@pytest.mark.parametrize("flags, named", [({"is_sd1": False, "is_sd3": True}, "SD3"),
                                          ({"is_sd1": False, "is_sd2": True}, "SD2"),
                                          ({"is_sd1": False, "is_sdxl": True, "latent_channels": 16}, "SDXL")])
def test_other_families_are_a_422_naming_what_is_loaded(tb_host, flags, named):
    fastapi = pytest.importorskip("fastapi")
    tb_host.shared.sd_model = make_sd_model(tb_host.name, **flags)
    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(tb_host.make_p(), ARGS)
    assert caught.value.status_code == 422 and f"{named} loaded" in caught.value.detail
    assert "SD1 or SDXL" in caught.value.detail


def test_the_tiny_upscaler_asks_for_an_sd1_checkpoint_or_hires_fix(tb_host):
    fastapi = pytest.importorskip("fastapi")
    use_sdxl(tb_host)
    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(tb_host.make_p(), script_args(TinyBreakerParams(enabled=True, base_steps=5, upscale=True)))
    assert caught.value.status_code == 422 and "'upscale'" in caught.value.detail and "Hires fix" in caught.value.detail


def test_a_tinybreaker_file_with_an_sdxl_refiner_gives_its_base_to_the_hosts_sdxl_checkpoint(tb_host):
    tb_host.engine = FakeEngine(has_transcoder=False)
    use_sdxl(tb_host)
    p = tb_host.make_p(width=64, height=64, seed=3)
    (output,) = tb_host.run(p, ARGS)
    assert "engine.transcode" not in call_names() and output.shape == (1, 4, 8, 8)
    assert tb_host.engine.previews == 0  # no TAESDXL half to preview with: the host's own latent preview
    assert p.extra_generation_params["TinyBreaker refiner"] == "SDXL"


def test_a_tinybreaker_file_with_an_sdxl_refiner_and_an_sd1_checkpoint_is_a_422_naming_both(tb_host):
    fastapi = pytest.importorskip("fastapi")
    tb_host.engine = FakeEngine(has_transcoder=False)
    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(tb_host.make_p(), ARGS)
    detail = caught.value.detail
    assert caught.value.status_code == 422 and "'checkpoint'" in detail
    assert "SDXL refiner" in detail and "no transcoder" in detail and "load an SDXL checkpoint" in detail
    assert "engine.base" not in call_names()

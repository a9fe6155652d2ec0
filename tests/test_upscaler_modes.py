"""The Tiny Upscaler's modes and upscale model (ComfyUI-TinyBreaker v0.4's TinyUpscalerV2, docs/numerics.md "Tiny
Upscaler"): ``enhancer`` re-details at the enlarged size and scales back to the original size with nearest
neighbours; an upscale model runs first and its output is resized (bilinear) to round(W·k) × round(H·k)."""

import pytest
import torch
import torch.nn.functional as F

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.stage_params import StageParams
from tinybreaker_ext.upscaler import resize_images, tiny_upscale


def stage(steps_start: int = 11) -> StageParams:
    return StageParams(sampler="euler", scheduler="karras", steps=16, steps_start=steps_start, steps_end=-1,
                       cfg=4.0, noise_seed=1, extra_noise=0.0)


NO_STEPS = stage(steps_start=20)  # an empty window: the canvas is encoded and decoded, nothing sampled


def encode(images):  # a latent that keeps the image: 4 channels of 8×8 means (the 4th repeats red)
    pooled = F.avg_pool2d(images, 8)
    return torch.cat([pooled, pooled[:, :1]], dim=1)


def decode(raw):
    return F.interpolate(raw[:, :3], scale_factor=8, mode="nearest")


def sharpen(x, sigma):  # a denoiser that changes the image: pulls every value towards 0 or 1
    return torch.where(x > 0.5 * 0.18215, x * 1.2, x * 0.8)


def run(images, **changes):
    values = dict(scale_by=2.0, encode_fn=encode, decode_fn=decode, denoiser=sharpen, stage=stage())
    values.update(changes)
    return tiny_upscale(images, **values)


def test_enhancer_returns_the_original_size_and_is_the_upscalers_image_scaled_back_with_nearest():
    images = torch.rand(2, 3, 40, 56)
    upscaled = run(images)
    enhanced = run(images, mode="enhancer")
    assert upscaled.shape == (2, 3, 80, 112) and enhanced.shape == images.shape
    assert torch.equal(enhanced, F.interpolate(upscaled, size=(40, 56), mode="nearest"))


def test_enhancer_re_details_the_image_instead_of_returning_it():
    images = torch.rand(1, 3, 32, 32)
    enhanced = run(images, mode="enhancer")
    plain = run(images, mode="enhancer", stage=NO_STEPS)
    assert not torch.allclose(enhanced, plain, atol=1e-3)
    assert torch.allclose(plain, F.interpolate(decode(encode(resize_images(images, 64, 64))), size=(32, 32),
                                               mode="nearest"), atol=1e-6)


@pytest.mark.parametrize("width,height,scale_by", [(30, 14, 1.5), (64, 48, 3.0), (20, 10, 1.25)])
def test_enhancer_keeps_odd_sizes(width, height, scale_by):
    out = run(torch.rand(1, 3, height, width), scale_by=scale_by, mode="enhancer")
    assert out.shape == (1, 3, height, width)


def test_an_upscale_model_runs_first_and_its_output_is_resized_to_the_target_size():
    images = torch.rand(1, 3, 24, 40)
    seen = []

    def model_x4(batch):
        seen.append(tuple(batch.shape))
        return F.interpolate(batch, scale_factor=4, mode="nearest") * 0.5

    phases = []
    import contextlib

    def phase(name):
        phases.append(name)
        return contextlib.nullcontext()

    out = run(images, pre_upscale=model_x4, stage_context=phase, stage=NO_STEPS)
    assert seen == [(1, 3, 24, 40)] and out.shape == (1, 3, 48, 80)
    assert phases == ["pre_upscale", "encode", "denoise", "decode"]  # each phase can place its module
    expected = decode(encode(resize_images(F.interpolate(images, scale_factor=4, mode="nearest") * 0.5, 80, 48)))
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out, run(images, stage=NO_STEPS), atol=1e-3)
    assert run(images, pre_upscale=model_x4, mode="enhancer").shape == images.shape


def test_an_upscale_model_that_changes_the_batch_or_channels_is_refused():
    with pytest.raises(ParameterError) as error:
        run(torch.rand(1, 3, 16, 16), pre_upscale=lambda batch: batch[:, :1])
    assert error.value.field == "upscale_model"


def test_an_unknown_mode_names_upscale_mode():
    with pytest.raises(ParameterError) as error:
        run(torch.rand(1, 3, 16, 16), mode="noisy")
    assert error.value.field == "upscale_mode"

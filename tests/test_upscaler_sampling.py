"""Tiny Upscaler sampling and sizes (docs/numerics.md "Tiny Upscaler"), checked with recording denoisers and
stand-in VAE functions against values computed here with plain ``torch.manual_seed`` + ``torch.randn``."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinybreaker_ext.errors import Cancelled, ParameterError
from tinybreaker_ext.sampling.schedules import sd1_sigmas
from tinybreaker_ext.stage_params import StageParams
from tinybreaker_ext.upscaler import (TileGeometry, add_extra_noise, denoise_canvas, resize_images, tiny_upscale,
                                      upscaled_size)

SCALE = 0.18215
# docs/numerics.md "Schedulers": dpmpp_2m/karras 16 steps, start 11, end −1
DEFAULT_SIGMAS = [0.280, 0.170, 0.099, 0.055, 0.029]


def style_stage(**changes) -> StageParams:
    values = dict(sampler="dpmpp_2m", scheduler="karras", steps=16, steps_start=11, steps_end=-1, cfg=4.0,
                  noise_seed=1, extra_noise=0.6)
    values.update(changes)
    return StageParams(**values)


def seeded_randn(seed: int, shape) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(shape)


class Recorder:
    """Identity denoiser (x0 = x): a dpmpp_2m / euler step then leaves x unchanged, so only added noise moves it."""

    def __init__(self):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), sigma.clone()))
        return x


def zero_encode(images):
    return torch.zeros(images.shape[0], 4, images.shape[2] // 8, images.shape[3] // 8)


def revealing_decode(raw):
    """Latent pixel → 8×8 block of 0.5 + 0.1·raw (first three channels), so the output shows the raw latent."""
    return 0.5 + 0.1 * F.interpolate(raw[:, :3], scale_factor=8, mode="nearest")


def test_default_upscaler_window_is_the_spec_table():
    sigmas = style_stage().sigmas(sd1_sigmas())
    assert sigmas.tolist() == pytest.approx(DEFAULT_SIGMAS, abs=6e-4)
    painting = style_stage(steps=14).sigmas(sd1_sigmas())  # PAINTING/COLOR_INK: 14/11/−1 → 2 steps
    assert painting.tolist() == pytest.approx([0.117, 0.061, 0.029], abs=6e-4)


def test_first_step_noise_is_drawn_per_tile_from_the_seed_and_later_steps_add_none():
    sigmas = torch.tensor([0.5, 0.25, 0.1])
    recorder = Recorder()
    geometry = TileGeometry(size=8, overlap=0, margin=2)  # reads at step 0 only see cells not written yet
    canvas = torch.zeros(1, 4, 16, 24)
    denoise_canvas(canvas, denoiser=recorder, sigmas=sigmas, sampler="dpmpp_2m", seed=7, geometry=geometry)
    step0 = [x for x, sigma in recorder.calls if float(sigma) == 0.5]
    assert len(step0) == 6 and len(recorder.calls) == 12
    for x in step0:  # each tile: 0·scale + noise(tile shape, seed 7)·σ0 — same pattern for equal shapes
        assert torch.allclose(x, seeded_randn(7, x.shape) * 0.5, atol=1e-6)
    # row 0: 10×10, 10×10, 10×8 (context below and right, none past the edge); row 1: 8×10, 8×10, 8×8
    assert [tuple(x.shape[-2:]) for x in step0] == [(10, 10), (10, 10), (10, 8), (8, 10), (8, 10), (8, 8)]
    assert torch.equal(step0[0], step0[1]) and torch.equal(step0[3], step0[4])
    once = denoise_canvas(canvas, denoiser=Recorder(), sigmas=sigmas[:2], sampler="dpmpp_2m", seed=7,
                          geometry=geometry)
    twice = denoise_canvas(canvas, denoiser=Recorder(), sigmas=sigmas, sampler="dpmpp_2m", seed=7,
                           geometry=geometry)
    assert torch.allclose(once, twice, atol=1e-6)  # the identity step 1 changed nothing: no fresh noise
    assert not torch.equal(once, canvas)


def test_each_sweep_samples_one_step_between_consecutive_sigmas():
    recorder = Recorder()
    denoise_canvas(torch.zeros(1, 4, 300, 260), denoiser=recorder, sigmas=torch.tensor(DEFAULT_SIGMAS),
                   sampler="euler", seed=1)
    assert [round(float(sigma), 3) for _x, sigma in recorder.calls] == [s for s in DEFAULT_SIGMAS[:-1]
                                                                         for _tile in range(9)]
    assert recorder.calls[0][0].shape == (1, 4, 144, 144)


def test_extra_noise_is_seeded_seed_plus_100_on_the_raw_latent():
    raw = torch.zeros(2, 4, 3, 5)
    noisy = add_extra_noise(raw, 0.6, seed=5)
    expected = seeded_randn(105, (1, 4, 3, 5)) * 0.6
    assert torch.allclose(noisy[0:1], expected) and torch.allclose(noisy[1:2], expected)  # per image
    assert torch.equal(add_extra_noise(raw, 0.0, seed=5), raw)


def test_extra_noise_reaches_the_decoder_in_raw_units_when_no_step_runs():
    images = torch.rand(1, 3, 32, 16)
    out = tiny_upscale(images, scale_by=1.5, encode_fn=zero_encode, decode_fn=revealing_decode,
                       denoiser=Recorder(), stage=style_stage(steps_start=20, noise_seed=3, extra_noise=0.6))
    assert out.shape == (1, 3, 48, 24)
    expected = 0.5 + 0.1 * seeded_randn(103, (1, 4, 6, 3))[:, :3] * 0.6
    assert torch.allclose(out[:, :, ::8, ::8], expected.clamp(0, 1), atol=1e-6)


def test_the_model_sees_raw_times_scale_plus_tile_noise_times_sigma0():
    recorder = Recorder()
    stage = style_stage(noise_seed=9)
    tiny_upscale(torch.rand(1, 3, 24, 32), scale_by=2.0, encode_fn=zero_encode, decode_fn=revealing_decode,
                 denoiser=recorder, stage=stage)
    x0, sigma0 = recorder.calls[0]
    shape = (1, 4, 6, 8)  # 48×64 px: one tile the size of the canvas
    expected = seeded_randn(109, shape) * 0.6 * SCALE + seeded_randn(9, shape) * float(stage.sigmas(sd1_sigmas())[0])
    assert x0.shape == shape and torch.allclose(x0, expected, atol=1e-5)
    assert len(recorder.calls) == 4  # 4 steps × 1 tile


@pytest.mark.parametrize("width,height,scale_by,expected", [
    (64, 48, 3.0, (192, 144)),
    (48, 64, 3.0, (144, 192)),  # portrait
    (20, 10, 1.25, (25, 12)),  # 12.5 rounds half to even, like Python's round in the reference
    (30, 14, 1.5, (45, 21)),  # not multiples of 8
    (16, 16, 6.0, (96, 96)),
])
def test_output_size_is_rounded_width_and_height_times_k(width, height, scale_by, expected):
    assert upscaled_size(width, height, scale_by) == expected
    out = tiny_upscale(torch.rand(2, 3, height, width), scale_by=scale_by, encode_fn=zero_encode,
                       decode_fn=revealing_decode, denoiser=Recorder(), stage=style_stage())
    assert out.shape == (2, 3, expected[1], expected[0])
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_canvas_smaller_than_one_tile_is_sampled_as_one_tile():
    recorder = Recorder()
    out = tiny_upscale(torch.rand(1, 3, 40, 24), scale_by=1.5, encode_fn=zero_encode, decode_fn=revealing_decode,
                       denoiser=recorder, stage=style_stage())
    assert out.shape == (1, 3, 60, 36)
    assert [tuple(x.shape) for x, _sigma in recorder.calls] == [(1, 4, 8, 5)] * 4  # 64×40 px padded canvas


def test_bilinear_resize_without_corner_alignment():
    ramp = torch.tensor([[[[0.0, 1.0]]]]).expand(1, 3, 1, 2)
    assert resize_images(ramp, 4, 1)[0, 0, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])


@pytest.mark.parametrize("value", [1.0, 0.5, 6.01, math.nan, math.inf, True, "2"])
def test_scale_by_outside_one_to_six_names_upscale_by(value):
    with pytest.raises(ParameterError) as error:
        tiny_upscale(torch.rand(1, 3, 8, 8), scale_by=value, encode_fn=zero_encode, decode_fn=revealing_decode,
                     denoiser=Recorder(), stage=style_stage())
    assert error.value.field == "upscale_by"


def test_unknown_sampler_fails_before_any_work():
    calls = []
    with pytest.raises(ParameterError) as error:
        tiny_upscale(torch.rand(1, 3, 8, 8), scale_by=2, encode_fn=lambda i: calls.append(i) or zero_encode(i),
                     decode_fn=revealing_decode, denoiser=Recorder(), stage=style_stage(sampler="heunpp"))
    assert error.value.field == "sampler" and not calls


def test_progress_counts_every_tile_of_every_image_and_cancel_stops_between_tiles():
    seen = []
    tiny_upscale(torch.rand(2, 3, 16, 16), scale_by=2, encode_fn=zero_encode, decode_fn=revealing_decode,
                 denoiser=Recorder(), stage=style_stage(), geometry=TileGeometry(size=2, overlap=0, margin=1),
                 callback=lambda step, total, x, denoised: seen.append((step, total, tuple(x.shape))))
    total = 2 * 4 * 4  # images × steps × tiles (4×4 latent, 2×2 tiles)
    assert [(step, count) for step, count, _shape in seen] == [(i, total) for i in range(total)]

    recorder = Recorder()

    def cancel_on_second(step, total, x, denoised):
        if step == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        tiny_upscale(torch.rand(1, 3, 16, 16), scale_by=2, encode_fn=zero_encode, decode_fn=revealing_decode,
                     denoiser=recorder, stage=style_stage(), geometry=TileGeometry(size=2, overlap=0, margin=0),
                     callback=cancel_on_second)
    assert len(recorder.calls) == 2


def test_batch_images_are_upscaled_like_single_images():
    images = torch.rand(2, 3, 16, 24)

    def run(batch):
        return tiny_upscale(batch, scale_by=2, encode_fn=lambda i: F.avg_pool2d(i, 8).repeat(1, 2, 1, 1)[:, :4],
                            decode_fn=revealing_decode, denoiser=lambda x, s: x * 0.9, stage=style_stage())

    both = run(images)
    assert torch.allclose(both[1:], run(images[1:]), atol=1e-6)
    assert not torch.allclose(both[0], both[1])

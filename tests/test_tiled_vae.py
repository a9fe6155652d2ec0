"""Tiled decode/encode (docs/numerics.md "Tiled VAE"): tile layout, blending masks, and partition of unity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.models.tiled import blend_weights, tiled_decode, tiled_encode


def nearest_decode(latent: torch.Tensor) -> torch.Tensor:
    """A 'decoder' whose every output pixel depends only on the latent pixel above it."""
    return F.interpolate(latent[:, :3] * 0.7 + 0.1, scale_factor=8, mode="nearest")


def pooled_encode(images: torch.Tensor) -> torch.Tensor:
    """An 'encoder' whose every latent pixel depends only on its own 8×8 image block."""
    pooled = F.avg_pool2d(images, 8)
    return torch.cat([pooled, pooled.mean(1, keepdim=True) - 0.5], dim=1)


class Recorder:
    def __init__(self, fn):
        self.fn, self.inputs = fn, []

    def __call__(self, x):
        self.inputs.append(tuple(x.shape[-2:]))
        return self.fn(x)


def test_decode_mask_has_the_spec_zero_border_ramp_and_length():
    mask = blend_weights(512, 128)                      # defaults: step 64 latent, pad 16 latent, ×8 px
    assert mask.shape == (768,) and mask.dtype == torch.float32
    assert torch.equal(mask[:64], torch.zeros(64))      # zero border pad·8/2 = 64 px
    ramp = torch.tensor([i / 127 for i in range(127)])  # 2·64 − 1 = 127 px from 0 towards 1
    assert torch.equal(mask[64:191], ramp)
    assert torch.equal(mask[191:577], torch.ones(386))
    assert torch.equal(mask, mask.flip(0))


def test_encode_mask_runs_over_latent_pixels():
    mask = blend_weights(64, 16)
    assert mask.shape == (96,)
    assert torch.equal(mask[:8], torch.zeros(8))
    assert torch.equal(mask[8:23], torch.tensor([i / 15 for i in range(15)]))
    assert torch.equal(mask[23:73], torch.ones(50))


@pytest.mark.parametrize("core, pad", [(512, 128), (64, 16), (256, 64), (16, 2), (8, 1), (24, 5), (64, 0)])
def test_masks_shifted_by_one_step_sum_to_one(core, pad):
    mask = blend_weights(core, pad).double()
    total = torch.zeros(core * 6 + 2 * pad, dtype=torch.float64)
    for k in range(6):
        total[k * core:k * core + core + 2 * pad] += mask
    inside = total[2 * pad:len(total) - 2 * pad]  # positions covered by a rising and a falling edge
    assert torch.allclose(inside, torch.ones_like(inside), atol=1e-6)


@pytest.mark.parametrize("size, crops", [
    (128, [(0, 64), (32, 128), (96, 128)]),   # 1024 px: origins −32, 32, 96 (extent 96)
    (100, [(0, 64), (32, 100), (96, 100)]),   # the last tile starts 4 latent px before the edge
    (64, [(0, 64), (32, 64)]),                # 512 px: one tile's worth still needs the second origin
    (33, [(0, 33), (32, 33)]),
    (32, [(0, 32)]),                          # fits: one call on the whole latent
])
def test_tiles_are_the_reference_crops_with_every_edge_tile_processed(size, crops):
    recorder = Recorder(nearest_decode)
    tiled_decode(recorder, torch.zeros(1, 4, size, 8))
    heights = [b - a for a, b in crops]
    assert recorder.inputs == [(h, 8) for h in heights]


@pytest.mark.parametrize("latent_hw", [(20, 24), (32, 32), (64, 64), (33, 97), (100, 75), (128, 128)])
@pytest.mark.parametrize("tile_px, overlap", [(512, 100), (256, 50), (128, 10), (384, 30), (512, 0)])
def test_tiled_decode_equals_untiled_for_a_local_decoder(latent_hw, tile_px, overlap):
    latent = torch.randn(2, 4, *latent_hw, generator=torch.Generator().manual_seed(sum(latent_hw)))
    tiled = tiled_decode(nearest_decode, latent, tile_px=tile_px, overlap_percent=overlap)
    assert tiled.shape == (2, 3, latent_hw[0] * 8, latent_hw[1] * 8) and tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, nearest_decode(latent), rtol=0, atol=1e-5)


@pytest.mark.parametrize("image_hw", [(64, 96), (256, 256), (512, 512), (264, 776), (800, 600)])
@pytest.mark.parametrize("tile_px, overlap", [(512, 100), (256, 50), (128, 10), (128, 3)])
def test_tiled_encode_equals_untiled_for_a_local_encoder(image_hw, tile_px, overlap):
    images = torch.rand(1, 3, *image_hw, generator=torch.Generator().manual_seed(image_hw[1]))
    tiled = tiled_encode(pooled_encode, images, tile_px=tile_px, overlap_percent=overlap)
    assert tiled.shape == (1, 4, image_hw[0] // 8, image_hw[1] // 8) and tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, pooled_encode(images), rtol=0, atol=1e-5)


def test_weights_cover_the_whole_canvas_exactly_once():
    def ones_decode(z):
        return torch.ones(z.shape[0], 3, z.shape[-2] * 8, z.shape[-1] * 8)

    ones = tiled_decode(ones_decode, torch.zeros(1, 4, 100, 130))
    torch.testing.assert_close(ones, torch.ones_like(ones), rtol=0, atol=1e-6)


def test_single_tile_fast_path_returns_the_decoder_output_unchanged():
    latent = torch.randn(1, 4, 24, 32)
    recorder = Recorder(lambda z: nearest_decode(z).half())
    out = tiled_decode(recorder, latent)
    assert recorder.inputs == [(24, 32)]
    assert out.dtype == torch.float32 and torch.equal(out, nearest_decode(latent).half().float())


def test_half_precision_tiles_are_blended_into_a_float32_canvas():
    latent = torch.randn(1, 4, 70, 70)
    out = tiled_decode(lambda z: nearest_decode(z).half(), latent)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, nearest_decode(latent), rtol=0, atol=2e-3)


def test_invalid_parameters_are_reported_by_field():
    with pytest.raises(ParameterError, match="overlap_percent"):
        tiled_decode(nearest_decode, torch.zeros(1, 4, 8, 8), overlap_percent=150)
    with pytest.raises(ParameterError, match="tile_px"):
        tiled_decode(nearest_decode, torch.zeros(1, 4, 8, 8), tile_px=0)
    with pytest.raises(ParameterError, match="multiple of 8"):
        tiled_encode(pooled_encode, torch.zeros(1, 3, 60, 64))


def test_tiled_tiny_vae_round_trip_has_the_right_shapes_and_range(taesd_encoder_sd, taesd_decoder_sd):
    from builders.taesd import tiny_vae_layout
    from tinybreaker_ext.models.taesd import load_tiny_vae

    vae = load_tiny_vae(tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native"), default_scale=0.18215,
                        device="cpu", dtype=torch.float32)
    latent = torch.randn(1, 4, 10, 6, generator=torch.Generator().manual_seed(3))
    recorder = Recorder(vae.decode)
    images = tiled_decode(recorder, latent, tile_px=32, overlap_percent=100)  # step 4, pad 1: origins −2, 2, (6)
    assert len(recorder.inputs) == 3 * 2
    assert images.shape == (1, 3, 80, 48)
    assert 0 <= images.min() and images.max() <= 1 + 1e-6  # blended clamped tiles: fp32 ramps may sum to 1 + ulp
    encoded = tiled_encode(vae.encode, images, tile_px=64, overlap_percent=100)
    assert encoded.shape == (1, 4, 10, 6) and torch.isfinite(encoded).all()

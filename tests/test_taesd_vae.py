"""TinyVAE encode/decode: shapes, value ranges, dtypes and the raw ↔ model-space helpers."""

from __future__ import annotations

import pytest
import torch

from builders.taesd import taesd_decoder_state_dict, taesd_encoder_state_dict, tiny_vae_layout
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.taesd import TinyDecoder, TinyVAE, load_tiny_vae


@pytest.fixture(scope="module")
def vae(taesd_encoder_sd, taesd_decoder_sd):
    sd = tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native", encoder_scale=0.18215, decoder_scale=0.18215)
    return load_tiny_vae(sd, device="cpu", dtype=torch.float32)


def test_encode_maps_unit_range_images_to_an_eighth_size_latent(vae):
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    latent = vae.encode(images)
    assert latent.shape == (2, 4, 5, 7) and latent.dtype == torch.float32
    assert torch.isfinite(latent).all() and latent.abs().max() < 20


def test_decode_returns_clamped_unit_range_images(vae):
    latent = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        raw_images = vae.decoder(latent)
    images = vae.decode(latent)
    assert images.shape == (1, 3, 40, 48) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert ((raw_images < 0) | (raw_images > 1)).any()  # the unclamped decoder overshoots here
    assert torch.equal(images, raw_images.clamp(0, 1))


def test_decode_matches_the_bare_decoder_on_in_range_outputs(taesd_decoder_sd):
    # the decoder half is madebyollin's Sequential: decode only adds the [0, 1] clamp
    decoder = TinyDecoder()
    decoder.load_state_dict(taesd_decoder_sd)
    vae = TinyVAE(None, decoder, (1.0, 0.0), (0.18215, 0.0))
    latent = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = decoder(latent).clamp(0, 1)
    assert torch.equal(vae.decode(latent), expected)


def test_raw_and_model_space_conversions_follow_the_standard_formula():
    raw = torch.tensor([[-2.0, 0.5, 3.0]])
    assert torch.allclose(TinyVAE(None, None, (1.0, 0.0), (0.18215, 0.0)).raw_to_model(raw), raw * 0.18215)
    vae = TinyVAE(None, None, (1.5305, 0.0609), (1.5305, 0.0609))
    assert torch.allclose(vae.raw_to_model(raw), (raw - 0.0609) * 1.5305)
    assert torch.allclose(vae.model_to_raw(vae.raw_to_model(raw)), raw)


def test_a_missing_half_is_a_clear_error():
    vae = TinyVAE(None, TinyDecoder(), (1.0, 0.0), (0.18215, 0.0), source="half.safetensors")
    with pytest.raises(ModelFileError, match="half.safetensors: contains no TAESD encoder"):
        vae.encode(torch.rand(1, 3, 8, 8))


def test_half_precision_weights_still_return_float32():
    halves = taesd_encoder_state_dict(0, dtype=torch.float16), taesd_decoder_state_dict(0, dtype=torch.float16)
    sd = tiny_vae_layout(*halves, "native", encoder_scale=0.13025, decoder_scale=0.13025)
    vae = load_tiny_vae(sd, device="cpu", dtype=torch.bfloat16)
    assert vae.decode(torch.zeros(1, 4, 2, 2)).dtype == torch.float32

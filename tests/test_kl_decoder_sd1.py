"""The SD1 KL-VAE decoder (docs/numerics.md "Decoders") loaded from ldm names, checked against an independent
functional ldm decoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from builders.sd1 import SD_VAE_DECODER, kl_decoder_full_meta_state_dict, kl_decoder_state_dict
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.kl_decoder import load_kl_decoder

pytest.importorskip("diffusers")


# ---- an ldm Decoder written out with torch.nn.functional (the CompVis code's arithmetic) ----

def _norm(sd, name, x):
    return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)


def _conv(sd, name, x):
    weight = sd[f"{name}.weight"]
    return F.conv2d(x, weight, sd[f"{name}.bias"], padding=weight.shape[-1] // 2)


def _resblock(sd, name, x):
    h = _conv(sd, f"{name}.conv1", F.silu(_norm(sd, f"{name}.norm1", x)))
    h = _conv(sd, f"{name}.conv2", F.silu(_norm(sd, f"{name}.norm2", h)))
    if f"{name}.nin_shortcut.weight" in sd:
        x = _conv(sd, f"{name}.nin_shortcut", x)
    return x + h


def _attention(sd, name, x):
    h = _norm(sd, f"{name}.norm", x)
    q, k, v = (_conv(sd, f"{name}.{part}", h) for part in "qkv")
    b, c, height, width = q.shape
    q = q.reshape(b, c, height * width).permute(0, 2, 1)
    k = k.reshape(b, c, height * width)
    weights = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
    h = torch.bmm(v.reshape(b, c, height * width), weights.permute(0, 2, 1)).reshape(b, c, height, width)
    return x + _conv(sd, f"{name}.proj_out", h)


def ldm_decode(sd, raw_latent, levels: int, num_res_blocks: int):
    h = _conv(sd, "decoder.conv_in", _conv(sd, "post_quant_conv", raw_latent))
    h = _resblock(sd, "decoder.mid.block_1", h)
    h = _resblock(sd, "decoder.mid.block_2", _attention(sd, "decoder.mid.attn_1", h))
    for level in reversed(range(levels)):
        for index in range(num_res_blocks + 1):
            h = _resblock(sd, f"decoder.up.{level}.block.{index}", h)
        if level != 0:
            h = _conv(sd, f"decoder.up.{level}.upsample.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return _conv(sd, "decoder.conv_out", F.silu(_norm(sd, "decoder.norm_out", h)))


@pytest.mark.parametrize("ch_mult", [(1, 2), (1, 2, 2)])
def test_decode_equals_the_ldm_decoder_on_latent_over_scale(ch_mult):
    sd = kl_decoder_state_dict(ch=32, ch_mult=ch_mult, z=4, seed=3)
    decoder = load_kl_decoder(sd, device="cpu", dtype=torch.float32)
    latent = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(0)) * 0.18215 * 4
    image = decoder.decode(latent)
    factor = 2 ** (len(ch_mult) - 1)
    assert image.shape == (2, 3, 6 * factor, 10 * factor) and image.dtype == torch.float32
    expected = ((ldm_decode(sd, latent / 0.18215, len(ch_mult), 2) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-5)
    assert 0.0 < image.mean() < 1.0 and image.std() > 0.01  # not a constant, not all clamped


def test_scale_given_by_the_caller_is_the_one_divided_out():
    sd = kl_decoder_state_dict(seed=4)
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.2
    fp16_scale = 0.18212890625  # 0.18215 as stored in fp16 files (docs/numerics.md "Latent spaces and scale factors")
    decoder = load_kl_decoder(sd, device="cpu", dtype=torch.float32, scale=fp16_scale)
    expected = ((ldm_decode(sd, latent / fp16_scale, 2, 2) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(decoder.decode(latent), expected, rtol=1e-4, atol=1e-5)


def test_output_is_clamped_to_the_unit_range():
    sd = kl_decoder_state_dict(seed=5)
    decoder = load_kl_decoder(sd, device="cpu", dtype=torch.float32)
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2)) * 20
    image = decoder.decode(latent)
    raw = (ldm_decode(sd, latent / 0.18215, 2, 2) + 1) / 2
    assert raw.min() < 0 or raw.max() > 1  # the test input really leaves [0, 1] before clamping
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_full_sd_vae_decoder_layout_loads_on_meta():
    sd = kl_decoder_full_meta_state_dict()
    expected_shapes = {  # docs/model-files.md "SD1 parts"
        "decoder.conv_in.weight": (512, 4, 3, 3),
        "decoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
        "decoder.conv_out.weight": (3, 128, 3, 3),
        "post_quant_conv.weight": (4, 4, 1, 1),
        "decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "decoder.up.1.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "decoder.up.0.upsample.conv.weight" not in sd
    decoder = load_kl_decoder(sd, device="meta", dtype=torch.float16)
    assert decoder.config["block_out_channels"] == [128, 256, 512, 512]
    assert decoder.config["layers_per_block"] == SD_VAE_DECODER["num_res_blocks"]
    parameters = sum(p.numel() for p in decoder.parameters())
    assert parameters == sum(t.numel() for t in sd.values())  # every stored tensor became a parameter


def test_encoder_and_tiny_vae_keys_beside_the_decoder_are_ignored():
    # prototype1's first_stage_model also holds the TAESDXL encoder (encoder.0..14, vae_scale).
    sd = kl_decoder_state_dict(seed=6)
    plain = load_kl_decoder(sd, device="cpu", dtype=torch.float32)
    mixed = dict(sd)
    mixed["encoder.0.weight"] = torch.zeros(64, 3, 3, 3)
    mixed["encoder.vae_scale"] = torch.tensor(0.13025)
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(load_kl_decoder(mixed, device="cpu", dtype=torch.float32).decode(latent),
                               plain.decode(latent))


def test_tiny_vae_decoder_is_not_taken_for_a_kl_decoder():
    taesd_like = {"decoder.1.weight": torch.zeros(64, 4, 3, 3), "decoder.vae_scale": torch.tensor(0.18215)}
    with pytest.raises(ModelFileError, match="decoder.conv_in.weight"):
        load_kl_decoder(taesd_like, device="cpu", dtype=torch.float32)

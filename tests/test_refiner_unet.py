"""The embedded SD1 refiner UNet: ldm names -> diffusers model, config from shapes, SD1 facts, clear errors."""

from __future__ import annotations

import pytest
import torch

from builders.sd1 import (SD15_UNET_KEY_COUNT, SD15_UNET_PARAMETERS, sd1_unet_full_meta_state_dict,
                          tiny_sd1_unet_diffusers, unet_to_ldm_state_dict)
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.sd1_refiner import SD1Refiner, infer_unet_config

pytest.importorskip("diffusers")

TINY = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), depth=1)
# SD1's shape in miniature: the last level without attention, 2 res-blocks, plus a deeper transformer.
SD1_LIKE = dict(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(0, 1), depth=2)


def _pair(layout: dict, seed: int = 0):
    reference = tiny_sd1_unet_diffusers(**layout, context_dim=32, seed=seed)
    ldm = unet_to_ldm_state_dict(reference, num_res_blocks=layout["num_res_blocks"],
                                 attention_levels=layout["attention_levels"])
    return reference, ldm


@pytest.mark.parametrize("layout", [TINY, SD1_LIKE], ids=["tiny", "sd1-like"])
def test_refiner_from_ldm_names_predicts_the_same_eps_as_the_diffusers_model(layout):
    reference, ldm = _pair(layout)
    refiner = SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 7, 32, generator=generator)
    timestep = torch.tensor([3.0, 871.0])
    with torch.no_grad():
        expected = reference(x, timestep, encoder_hidden_states=context).sample
    eps = refiner.eps(x, timestep, context)
    assert eps.dtype == torch.float32 and eps.shape == x.shape
    torch.testing.assert_close(eps, expected, rtol=1e-5, atol=1e-5)
    # The output depends on every input (no zero-initialised output conv hides a broken mapping).
    assert not torch.allclose(refiner.eps(x, timestep.flip(0), context), eps)
    assert not torch.allclose(refiner.eps(x, timestep, context.flip(0)), eps)


def test_one_context_is_shared_by_a_batch_of_latents():
    _, ldm = _pair(TINY)
    refiner = SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
    t = torch.full((3,), 400.0)
    torch.testing.assert_close(refiner.eps(x, t, context), refiner.eps(x, t, context.expand(3, -1, -1)))


def test_bfloat16_refiner_returns_float32_close_to_the_float32_result():
    _, ldm = _pair(TINY)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([250.0])
    full = SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32).eps(x, t, context)
    half = SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    eps = half.eps(x, t, context)
    assert eps.dtype == torch.float32
    assert (eps - full).abs().max() < 0.05 * full.abs().max()


@pytest.mark.parametrize("layout", [TINY, SD1_LIKE], ids=["tiny", "sd1-like"])
def test_unet_config_is_inferred_from_shapes(layout):
    _, ldm = _pair(layout)
    config = infer_unet_config(ldm)
    assert config["block_out_channels"] == [layout["model_channels"] * mult for mult in layout["channel_mult"]]
    assert config["layers_per_block"] == layout["num_res_blocks"]
    assert config["down_block_types"] == [("CrossAttnDownBlock2D" if level in layout["attention_levels"]
                                           else "DownBlock2D") for level in range(len(layout["channel_mult"]))]
    assert config["transformer_layers_per_block"] == layout["depth"]
    assert (config["cross_attention_dim"], config["in_channels"], config["out_channels"]) == (32, 4, 4)
    assert not config["use_linear_projection"]


def test_full_sd15_ldm_layout_is_consumed_without_missing_or_unexpected_keys():
    ldm = sd1_unet_full_meta_state_dict()
    # Facts about SD1.5 single files, independent of our code: key count, parameter count, well-known names/shapes.
    assert len(ldm) == SD15_UNET_KEY_COUNT
    assert sum(t.numel() for t in ldm.values()) == SD15_UNET_PARAMETERS
    expected_shapes = {
        "input_blocks.0.0.weight": (320, 4, 3, 3),
        "time_embed.0.weight": (1280, 320),
        "out.2.weight": (4, 320, 3, 3),
        "input_blocks.8.1.transformer_blocks.0.attn1.to_k.weight": (1280, 1280),
        "input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
        "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "input_blocks.9.0.op.weight": (1280, 1280, 3, 3),
        "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight": (10240, 1280),
        "middle_block.2.out_layers.3.weight": (1280, 1280, 3, 3),
        "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "output_blocks.11.1.transformer_blocks.0.norm3.weight": (320,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(ldm[key].shape) == shape, key

    config = infer_unet_config(ldm)
    assert (config["block_out_channels"], config["layers_per_block"]) == ([320, 640, 1280, 1280], 2)
    assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert (config["cross_attention_dim"], config["attention_head_dim"]) == (768, 8)

    # loading checks that the converted keys are exactly the model's, with the model's shapes
    unet = SD1Refiner.from_state_dict(ldm, device="meta", dtype=torch.float16).unet
    assert next(unet.parameters()).dtype == torch.float16


def test_sd1_sigma_table_has_the_sd1_sigma_range():
    from tinybreaker_ext.sampling.schedules import sd1_sigmas

    sigmas = sd1_sigmas()
    # Known SD1 values (A1111/k-diffusion): sigma_min 0.0292, sigma_max 14.6146.
    assert sigmas[0].item() == pytest.approx(0.0292, abs=1e-4)
    assert sigmas[-1].item() == pytest.approx(14.6146, abs=1e-4)


def test_refiner_eps_plugs_into_eps_denoiser():
    from tinybreaker_ext.sampling.denoisers import EpsDenoiser
    from tinybreaker_ext.sampling.schedules import sd1_sigmas

    reference, ldm = _pair(TINY)
    refiner = SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6)) * 3
    context = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(7))
    sigmas = sd1_sigmas()
    t = 600
    sigma = sigmas[t].float().reshape(1)
    denoised = EpsDenoiser(refiner.eps, sigmas)(x, sigma, context)
    with torch.no_grad():
        eps = reference(x / (sigma ** 2 + 1) ** 0.5, torch.tensor([float(t)]), encoder_hidden_states=context).sample
    torch.testing.assert_close(denoised, x - sigma * eps, rtol=1e-5, atol=1e-5)


def test_missing_tensor_names_the_key():
    _, ldm = _pair(TINY)
    del ldm["input_blocks.0.0.weight"]
    with pytest.raises(ModelFileError, match="input_blocks.0.0.weight"):
        SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)


def test_wrong_shape_names_the_tensor():
    _, ldm = _pair(TINY)
    ldm["middle_block.0.emb_layers.1.bias"] = torch.zeros(3)
    with pytest.raises(ModelFileError, match="mid_block.resnets.0.time_emb_proj.bias"):
        SD1Refiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)

"""Tiny VAEs as TinyBreaker files store them: halves and their numbering, scales read exactly, errors naming the
part."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from builders.common import save_safetensors
from builders.taesd import (SD1_SCALE_FP16, SDXL_SCALE_FP16, taesd_decoder_state_dict, taesd_encoder_state_dict,
                            tiny_vae_layout)
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.taesd import load_tiny_vae

CPU = dict(device="cpu", dtype=torch.float32)
IMAGES = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(5))
LATENT = torch.randn(1, 4, 3, 4, generator=torch.Generator().manual_seed(6))


def _outputs(vae):
    encoded = vae.encode(IMAGES) if vae.encoder is not None else None
    with torch.no_grad():
        decoded = vae.decoder(LATENT) if vae.decoder is not None else None
    return encoded, decoded


@pytest.fixture(scope="module")
def native_outputs(taesd_encoder_sd, taesd_decoder_sd):
    sd = tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native")
    return _outputs(load_tiny_vae(sd, default_scale=0.18215, **CPU))


def test_diffusers_style_decoder_numbering_is_shifted_back_by_one(taesd_decoder_sd, native_outputs):
    shifted = {f"decoder.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v for k, v in taesd_decoder_sd.items()}
    assert "decoder.0.weight" in shifted
    vae = load_tiny_vae(shifted, default_scale=0.18215, **CPU)
    with torch.no_grad():
        assert torch.equal(vae.decoder(LATENT), native_outputs[1])


def test_fp16_scales_stored_in_the_file_are_used_exactly(taesd_encoder_sd, taesd_decoder_sd, tmp_path):
    # prototype0's first_stage_model: TAESDXL encoder + TAESD (SD1) decoder, each with its own scale
    sd = tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native", encoder_scale=0.13025, decoder_scale=0.18215)
    path = save_safetensors({k: v.half() for k, v in sd.items()}, tmp_path / "tiny.safetensors")
    vae = load_tiny_vae(load_file(path), default_scale=1.0, **CPU)
    assert vae.encoder_space == (SDXL_SCALE_FP16, 0.0) and SDXL_SCALE_FP16 == 0.1302490234375
    assert vae.decoder_space == (SD1_SCALE_FP16, 0.0) and SD1_SCALE_FP16 == 0.18212890625
    raw = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(vae.raw_to_model(raw), raw * 0.18212890625, rtol=0, atol=0)
    torch.testing.assert_close(vae.model_to_raw(raw), raw / 0.1302490234375, rtol=0, atol=0)


def test_default_scale_is_used_only_when_the_file_has_none(taesd_encoder_sd):
    vae = load_tiny_vae(tiny_vae_layout(taesd_encoder_sd, None, "native"), default_scale=0.13025, **CPU)
    assert vae.encoder_space == (0.13025, 0.0) and vae.decoder is None
    assert load_tiny_vae(tiny_vae_layout(taesd_encoder_sd, None, "native"), **CPU).encoder_space == (0.18215, 0.0)


def test_ldm_decoder_keys_next_to_a_tiny_encoder_are_not_taken_for_a_tiny_decoder(taesd_encoder_sd):
    # prototype1's first_stage_model: TAESDXL encoder + full SD1 KL decoder (ldm names)
    sd = tiny_vae_layout(taesd_encoder_sd, None, "native", encoder_scale=0.13025)
    sd.update({"decoder.conv_in.weight": torch.zeros(512, 4, 3, 3), "post_quant_conv.weight": torch.zeros(4, 4, 1, 1)})
    vae = load_tiny_vae(sd, **CPU)
    assert vae.encoder is not None and vae.decoder is None
    with pytest.raises(ModelFileError, match="no TAESD decoder"):
        vae.decode(LATENT)


def test_latent_channels_are_inferred_from_shapes():
    sd = tiny_vae_layout(taesd_encoder_state_dict(1, latent_channels=16, hidden_channels=8),
                         taesd_decoder_state_dict(1, latent_channels=16, hidden_channels=8), "native")
    vae = load_tiny_vae(sd, default_scale=1.0, **CPU)
    assert vae.encode(IMAGES).shape == (1, 16, 3, 4)
    assert vae.decode(torch.zeros(1, 16, 3, 4)).shape == (1, 3, 24, 32)


@pytest.mark.parametrize("layout, drop, part", [
    ("native", "decoder.13.conv.2.bias", "TAESD decoder"),
    ("native", "encoder.6.weight", "TAESD encoder"),
])
def test_a_missing_key_is_reported_with_the_file_and_the_half(layout, drop, part, taesd_encoder_sd, taesd_decoder_sd):
    sd = tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, layout)
    del sd[drop]
    with pytest.raises(ModelFileError) as error:
        load_tiny_vae(sd, default_scale=0.18215, **CPU)
    message = str(error.value)
    assert message.startswith("<state dict>: ") and part in message and "missing" in message


def test_wrong_shapes_and_unknown_files_are_errors(taesd_encoder_sd):
    sd = tiny_vae_layout(taesd_encoder_sd, None, "native")
    sd["encoder.3.conv.0.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ModelFileError, match=r"TAESD encoder '3\.conv\.0\.weight' has shape"):
        load_tiny_vae(sd, default_scale=1.0, **CPU)
    with pytest.raises(ModelFileError, match="no TAESD encoder or decoder"):
        load_tiny_vae({"model.diffusion_model.x": torch.zeros(1)}, default_scale=1.0, **CPU)


def test_load_places_weights_on_the_requested_dtype(taesd_encoder_sd, taesd_decoder_sd):
    vae = load_tiny_vae(tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native"), default_scale=0.18215,
                        device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    assert vae.encode(IMAGES).dtype == torch.float32  # latents leave the model as float32


def test_loads_from_lazy_views_of_a_tinybreaker_style_checkpoint(taesd_encoder_sd, taesd_decoder_sd, tmp_path,
                                                                  native_outputs):
    from builders.common import prefixed
    from builders.taesd import transcoder_state_dict
    from tinybreaker_ext.files.safetensors_file import SafetensorsFile
    from tinybreaker_ext.models.taesd import load_transcoder

    # prototype1: TAESDXL encoder + ldm KL decoder in first_stage_model., TAESD pair in refiner.first_stage_model.
    main = tiny_vae_layout(taesd_encoder_sd, None, "native", encoder_scale=0.13025)
    main["decoder.conv_in.weight"] = torch.zeros(512, 4, 3, 3)
    fast = tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "native", encoder_scale=0.18215, decoder_scale=0.18215)
    del fast["decoder.17.weight"]
    checkpoint = {**prefixed(main, "first_stage_model."), **prefixed(fast, "refiner.first_stage_model."),
                  **prefixed(transcoder_state_dict(0), "transcoder.")}
    path = save_safetensors({k: v.half() for k, v in checkpoint.items()}, tmp_path / "tinybreaker_p1.safetensors")
    with SafetensorsFile(path) as file:
        vae = load_tiny_vae(file.prefixed("first_stage_model."), **CPU)
        assert vae.decoder is None and vae.encoder_space == (SDXL_SCALE_FP16, 0.0)
        torch.testing.assert_close(vae.encode(IMAGES), native_outputs[0], rtol=2e-2, atol=2e-2)  # fp16 weights
        torch.testing.assert_close(load_transcoder(file.prefixed("transcoder."), **CPU)(LATENT),
                                   load_transcoder(transcoder_state_dict(0), **CPU)(LATENT), rtol=0, atol=0)
        with pytest.raises(ModelFileError) as error:
            load_tiny_vae(file.prefixed("refiner.first_stage_model."), **CPU)
    expected = f"{path}: TAESD decoder under 'refiner.first_stage_model.' is missing '17.weight'"
    assert str(error.value).startswith(expected)


@pytest.mark.parametrize("layout", ["comfy", "bare"])
def test_standalone_taesd_layouts_are_not_loaded(layout, taesd_encoder_sd, taesd_decoder_sd):
    """Only classification knows them (to name a wrong pick); no TinyBreaker file stores them."""
    sd = (tiny_vae_layout(taesd_encoder_sd, taesd_decoder_sd, "comfy") if layout == "comfy"
          else dict(taesd_decoder_sd))
    with pytest.raises(ModelFileError, match="no TAESD encoder or decoder"):
        load_tiny_vae(sd, default_scale=0.18215, **CPU)

"""The transcoder is TAESD_enc(TAESDXL_dec(z)) in model space."""

from __future__ import annotations

import pytest
import torch

from builders.common import save_safetensors
from builders.taesd import taesd_decoder_state_dict, taesd_encoder_state_dict, transcoder_state_dict
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.safetensors_file import SafetensorsFile
from tinybreaker_ext.models.taesd import TinyDecoder, TinyEncoder
from tinybreaker_ext.models.taesd import load_transcoder

CPU = dict(device="cpu", dtype=torch.float32)
Z_SDXL = torch.randn(2, 4, 3, 4, generator=torch.Generator().manual_seed(7)) * 2


@pytest.fixture(scope="module")
def halves_by_hand():
    """The same random weights the seed-0 transcoder holds, loaded into plain madebyollin-style modules."""
    decoder, encoder = TinyDecoder(), TinyEncoder()
    decoder.load_state_dict({k: v.float() for k, v in taesd_decoder_state_dict(0, dtype=torch.float16).items()})
    encoder.load_state_dict({k: v.float() for k, v in taesd_encoder_state_dict(1, dtype=torch.float16).items()})
    return decoder, encoder


@pytest.fixture(scope="module")
def transcoder(transcoder_sd):
    return load_transcoder(transcoder_sd, **CPU)


def test_model_space_transcode_is_encoder_of_decoder_without_clamp_or_blur(transcoder, halves_by_hand):
    decoder, encoder = halves_by_hand
    with torch.no_grad():
        expected = encoder(decoder(Z_SDXL))
    torch.testing.assert_close(transcoder(Z_SDXL), expected, rtol=0, atol=0)
    assert transcoder(Z_SDXL).shape == (2, 4, 3, 4)


def test_no_clamp_between_decoder_and_encoder():
    # push the decoder's output far above 1: a clamp between the halves would change the result
    sd = transcoder_state_dict(0, dtype=torch.float32)
    sd["transd.19.bias"] = sd["transd.19.bias"] + 3.0
    transcoder = load_transcoder(sd, **CPU)
    decoder, encoder = TinyDecoder(), TinyEncoder()
    decoder.load_state_dict({k[len("transd."):]: v for k, v in sd.items() if k.startswith("transd.")})
    encoder.load_state_dict({k[len("transe."):]: v for k, v in sd.items() if k.startswith("transe.")})
    with torch.no_grad():
        images = decoder(Z_SDXL)
        assert images.min() > 1
        unclamped, clamped = encoder(images), encoder(images.clamp(0, 1))
    transcoded = transcoder(Z_SDXL)
    torch.testing.assert_close(transcoded, unclamped, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(transcoded, clamped, atol=1e-3)


def test_blur_sigma_and_scalars_are_not_needed(transcoder_sd, transcoder):
    assert "transx.gaussian_blur_sigma" in transcoder_sd
    bare = {k: v for k, v in transcoder_sd.items() if k.startswith(("transd.", "transe."))}
    assert torch.equal(load_transcoder(bare, **CPU)(Z_SDXL), transcoder(Z_SDXL))


def test_old_builder_naming_loads_the_same_weights(transcoder):
    old = load_transcoder(transcoder_state_dict(0, naming="old"), **CPU)
    assert torch.equal(old(Z_SDXL), transcoder(Z_SDXL))


@pytest.mark.parametrize("drop, part", [("transe.9.conv.4.weight", "transcoder encoder (transe)"),
                                        ("transd.1.weight", "transcoder decoder (transd)")])
def test_missing_keys_name_the_file_and_the_part(transcoder_sd, drop, part, tmp_path):
    broken = dict(transcoder_sd)
    del broken[drop]
    path = save_safetensors(broken, tmp_path / "tinybreaker_prototype1.safetensors")
    with SafetensorsFile(path) as file, pytest.raises(ModelFileError) as error:
        load_transcoder(file, **CPU)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and part in message
    assert drop.split(".", 1)[1] in message


def test_a_file_without_transcoder_weights_is_rejected():
    with pytest.raises(ModelFileError, match=r"transcoder decoder \(transd\) is missing '1\.weight'"):
        load_transcoder({"first_stage_model.encoder.0.weight": torch.zeros(64, 3, 3, 3)}, **CPU)


def test_weights_follow_the_requested_dtype_and_output_is_float32(transcoder_sd):
    loaded = load_transcoder(transcoder_sd, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded(Z_SDXL).dtype == torch.float32

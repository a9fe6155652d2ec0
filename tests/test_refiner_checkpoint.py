"""tests/builders/refiner_checkpoint.py: a TinyBreaker file's embedded refiner as an SD1 checkpoint in the ldm
single-file layout (what the live comparison loads into a real WebUI)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from builders.refiner_checkpoint import kl_encoder_like
from builders.refiner_checkpoint import main as convert
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import classify


def tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


@pytest.fixture(scope="module", params=[1, 0], ids=["prototype1", "prototype0"])
def converted(request, tiny_model_folder, tmp_path_factory):
    _folder, paths = tiny_model_folder
    source = paths[f"checkpoint{request.param}"]
    out = tmp_path_factory.mktemp("sd1") / "refiner_sd1.safetensors"
    assert convert([source, str(out)]) == 0
    return request.param, tensors(source), tensors(out), out


def test_unet_clip_and_decoder_are_the_files_own_tensors_under_ldm_names(converted):
    prototype, source, sd1, _out = converted
    decoder_prefix = "first_stage_hqmodel." if prototype == 0 else "first_stage_model."
    expected = {}
    for key, value in source.items():
        if key.startswith("refiner.diffusion_model."):
            expected["model.diffusion_model." + key[len("refiner.diffusion_model."):]] = value
        elif key.startswith("refiner.conditioner."):
            expected["cond_stage_model.transformer." + key[len("refiner.conditioner."):]] = value
        elif key.startswith(decoder_prefix + "decoder.") or key.startswith(decoder_prefix + "post_quant_conv."):
            expected["first_stage_model." + key[len(decoder_prefix):]] = value
    assert any(key.startswith("cond_stage_model.transformer.text_model.encoder.layers.") for key in expected)
    decoder = {key[len("first_stage_model."):]: value for key, value in expected.items()
               if key.startswith("first_stage_model.")}
    encoder = {"first_stage_model." + key for key in kl_encoder_like(decoder)}
    assert any(key.startswith("first_stage_model.encoder.down.") for key in encoder)
    # nothing else: no PixArt, transcoder or tiny-VAE tensors (the file's tiny encoders are not the KL encoder)
    assert set(sd1) == set(expected) | encoder and not encoder & set(expected)
    for key, value in expected.items():
        assert sd1[key].dtype == value.dtype and torch.equal(sd1[key], value), key


def test_the_file_is_seen_as_an_sd1_checkpoint_not_a_tinybreaker_file(converted):
    *_, out = converted
    with pytest.raises(ModelFileError, match="looks like an SD1/SD2 checkpoint"):
        classify(out)


def test_the_whole_kl_vae_loads_strictly_as_a_hosts_vae_would(converted):
    """The hosts build a complete KL VAE (encoder included): the random encoder must fit the decoder's shapes."""
    single_file = pytest.importorskip("diffusers.loaders.single_file_utils")
    from diffusers import AutoencoderKL

    from tinybreaker_ext.models.kl_decoder import infer_kl_decoder_config

    *_, sd1, _out = converted
    vae = {key[len("first_stage_model."):]: value.float() for key, value in sd1.items()
           if key.startswith("first_stage_model.")}
    config = infer_kl_decoder_config(vae)
    levels = len(config["block_out_channels"])
    diffusers_config = {"down_block_types": ["DownEncoderBlock2D"] * levels,
                        "up_block_types": ["UpDecoderBlock2D"] * levels}
    model = AutoencoderKL(in_channels=config["out_channels"], out_channels=config["out_channels"],
                          latent_channels=config["in_channels"], block_out_channels=config["block_out_channels"],
                          layers_per_block=config["layers_per_block"], norm_num_groups=32, **diffusers_config)
    model.load_state_dict(single_file.convert_ldm_vae_checkpoint(vae, diffusers_config), strict=True)
    with torch.no_grad():
        latent = model.encode(torch.rand(1, 3, 32, 32) * 2 - 1).latent_dist.mean
    assert latent.shape == (1, config["in_channels"], 32 // 2 ** (levels - 1), 32 // 2 ** (levels - 1))
    assert torch.isfinite(latent).all() and latent.std() > 0


def test_a_file_that_is_not_tinybreaker_is_refused(tiny_model_folder, tmp_path):
    _folder, paths = tiny_model_folder
    with pytest.raises(ValueError, match="TinyBreaker prototype0/1 file is needed"):
        convert([paths["t5"], str(tmp_path / "out.safetensors")])

"""Classification from header keys: every supported layout, wrong kinds with helpful one-line messages."""

from __future__ import annotations


import pytest
import torch

import tinybreaker_ext.files.tensor_bytes as tensor_bytes
from builders.common import prefixed
from builders.files import (
    TINYBREAKER_METADATA, kl_decoder_keys, pixart_keys, sd1_checkpoint_keys, t5_keys, taesd_decoder_keys,
    taesd_encoder_keys, tinybreaker_keys, transcoder_keys, write_model, write_pickle_checkpoint,
)
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import (
    BASE_PREFIX, FIRST_STAGE_HQ_PREFIX, REFINER_FIRST_STAGE_PREFIX, TRANSCODER_PREFIX, FileKind, classify,
    open_model_file,
)
from tinybreaker_ext.files.safetensors_file import SafetensorsFile
from tinybreaker_ext.models.pixart_keys import DIFFUSERS as PIXART_DIFFUSERS, NATIVE as PIXART_NATIVE


def _write(tmp_path, name, state_dict, metadata=None) -> str:
    return write_model(tmp_path / f"{name}.safetensors", state_dict, metadata)


@pytest.mark.parametrize("prototype, kind", [(0, FileKind.TINYBREAKER_PROTOTYPE0),
                                             (1, FileKind.TINYBREAKER_PROTOTYPE1)])
@pytest.mark.parametrize("layout", [PIXART_NATIVE, PIXART_DIFFUSERS])
def test_tinybreaker_prototypes(tmp_path, prototype, kind, layout):
    path = _write(tmp_path, "tb", tinybreaker_keys(prototype, layout), TINYBREAKER_METADATA)
    info = classify(path)
    assert info.kind is kind and info.is_tinybreaker
    title = TINYBREAKER_METADATA["modelspec.title"]
    assert info.description == f"TinyBreaker prototype{prototype} checkpoint (PixArt {layout} layout, '{title}')"


def test_prototype_markers_are_the_spec_prefixes():
    assert (BASE_PREFIX, FIRST_STAGE_HQ_PREFIX, REFINER_FIRST_STAGE_PREFIX, TRANSCODER_PREFIX) == (
        "base.diffusion_model.", "first_stage_hqmodel.", "refiner.first_stage_model.", "transcoder.")


def test_prototype1_marker_wins_when_both_are_present(tmp_path):
    keys = {**tinybreaker_keys(1), **prefixed(kl_decoder_keys(), "first_stage_hqmodel.")}
    assert classify(_write(tmp_path, "both", keys)).kind is FileKind.TINYBREAKER_PROTOTYPE1


def test_tinybreaker_without_prototype_marker_is_rejected(tmp_path):
    keys = {k: v for k, v in tinybreaker_keys(1).items() if not k.startswith("refiner.first_stage_model.")}
    path = _write(tmp_path, "partial", keys)
    with pytest.raises(ModelFileError, match="neither first_stage_hqmodel.* .prototype0. nor refiner.first_stage_mod"):
        classify(path)


def test_base_prefix_without_pixart_signature_is_rejected(tmp_path):
    path = _write(tmp_path, "nopixart", {"base.diffusion_model.foo.weight": torch.zeros(2),
                                         "refiner.first_stage_model.decoder.1.weight": torch.zeros(2)})
    with pytest.raises(ModelFileError, match="no PixArt-Sigma signature"):
        classify(path)


@pytest.mark.parametrize("layout", [PIXART_NATIVE, PIXART_DIFFUSERS])
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_plain_pixart_is_named_but_not_taken(tmp_path, layout, prefix):
    with pytest.raises(ModelFileError, match=rf"looks like a plain PixArt model \({layout} layout\), without "
                                             "TinyBreaker's refiner"):
        classify(_write(tmp_path, "pixart", prefixed(pixart_keys(layout), prefix)))


def test_umt5_is_not_taken_for_t5(tmp_path):
    keys = {**t5_keys(), "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight": torch.zeros(32, 2)}
    with pytest.raises(ModelFileError, match="UMT5"):
        classify(_write(tmp_path, "umt5", keys))


def test_pixart_needs_both_signature_keys(tmp_path):
    only_one = {k: v for k, v in pixart_keys("native").items() if k != "final_layer.scale_shift_table"}
    with pytest.raises(ModelFileError, match="unrecognised"):
        classify(_write(tmp_path, "one", only_one))
    base_only_one = tinybreaker_keys(1)
    del base_only_one[BASE_PREFIX + "final_layer.scale_shift_table"]
    with pytest.raises(ModelFileError, match="no PixArt-Sigma signature"):
        classify(_write(tmp_path, "base", base_only_one))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                                   torch.float8_e5m2])
def test_t5_encoder_dtypes(tmp_path, dtype):
    info = classify(_write(tmp_path, "t5", t5_keys(dtype)))
    assert info.kind is FileKind.T5_ENCODER and info.description == f"T5 encoder ({str(dtype)[6:]})"
    assert info.key_prefix == ""


@pytest.mark.parametrize("scaled", ["marker", "per_tensor"])
def test_scaled_fp8_t5(tmp_path, scaled):
    info = classify(_write(tmp_path, "t5", t5_keys(torch.float8_e4m3fn, scaled=scaled)))
    assert info.description == "T5 encoder (float8_e4m3fn, scaled fp8)"


def test_t5_inside_a_comfyui_all_in_one_checkpoint(tmp_path):
    keys = prefixed(t5_keys(torch.float16, embedding_key="encoder.embed_tokens.weight"),
                    "text_encoders.t5xxl.transformer.")
    info = classify(_write(tmp_path, "t5", keys))
    assert info.kind is FileKind.T5_ENCODER and info.key_prefix == "text_encoders.t5xxl.transformer."
    assert info.description == "T5 encoder (float16) under 'text_encoders.t5xxl.transformer.'"


def test_t5_blocks_without_embedding_are_rejected(tmp_path):
    keys = {k: v for k, v in t5_keys().items() if k != "shared.weight"}
    with pytest.raises(ModelFileError, match="no shared.weight/encoder.embed_tokens.weight"):
        classify(_write(tmp_path, "t5", keys))


@pytest.mark.parametrize("keys, phrase", [
    (sd1_checkpoint_keys(), "looks like an SD1/SD2 checkpoint (model.diffusion_model.*)"),
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
      "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(1)},
     "looks like an SDXL checkpoint"),
    ({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, "looks like a Flux model"),
    ({"joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(1)}, "looks like an SD3 model"),
    ({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(1)}, "looks like a LoRA"),
    (prefixed(kl_decoder_keys(), ""), "looks like a full KL VAE"),
    (transcoder_keys(), "looks like a bare tiny latent transcoder"),
    (prefixed(transcoder_keys(), "transcoder."), "looks like a bare tiny latent transcoder"),
    ({**prefixed(taesd_encoder_keys(), "encoder."), **prefixed(taesd_decoder_keys(), "decoder.")},
     "looks like a tiny VAE (TAESD)"),
    (prefixed(taesd_decoder_keys(), "decoder."), "looks like a tiny VAE (TAESD)"),
    ({**prefixed(taesd_encoder_keys(), "taesd_encoder."), **prefixed(taesd_decoder_keys(), "taesd_decoder.")},
     "looks like a tiny VAE (TAESD)"),
    ({**prefixed(taesd_encoder_keys(), "encoder.layers."),
      **prefixed(taesd_decoder_keys(shift=-1), "decoder.layers.")}, "looks like a tiny VAE (TAESD)"),
    ({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(1)}, "looks like a CLIP text encoder"),
    ({"zeta": torch.zeros(1), "alpha": torch.zeros(1), "mid": torch.zeros(1), "omega": torch.zeros(1)},
     "unrecognised: 4 tensors, first keys alpha, mid, omega"),
    ({}, "contains no tensors"),
])
def test_other_files_say_what_they_look_like(tmp_path, keys, phrase):
    path = _write(tmp_path, "other", keys)
    with pytest.raises(ModelFileError) as caught:
        classify(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and phrase in message and "\n" not in message
    assert "expected a TinyBreaker checkpoint" in message


def test_classification_reads_no_tensor_data(tmp_path, monkeypatch):
    path = _write(tmp_path, "tb", tinybreaker_keys(1))
    monkeypatch.setattr(tensor_bytes, "read_bytes", lambda *a, **k: pytest.fail("tensor data was read"))
    assert classify(path).kind is FileKind.TINYBREAKER_PROTOTYPE1
    with SafetensorsFile(path) as file:
        assert classify(file).kind is FileKind.TINYBREAKER_PROTOTYPE1
        assert classify(file.prefixed("base.")).kind is FileKind.TINYBREAKER_PROTOTYPE1  # the whole file


def test_open_model_file_returns_the_open_file_and_info(tmp_path):
    path = _write(tmp_path, "t5", t5_keys(torch.float8_e4m3fn))
    file, info = open_model_file(path, {FileKind.T5_ENCODER})
    with file:
        assert info.kind is FileKind.T5_ENCODER
        assert file["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == torch.float8_e4m3fn


def test_open_model_file_wrong_kind_is_one_line(tmp_path):
    path = _write(tmp_path, "t5", t5_keys(torch.float8_e4m3fn))
    with pytest.raises(ModelFileError) as caught:
        open_model_file(path, [FileKind.TINYBREAKER_PROTOTYPE0, FileKind.TINYBREAKER_PROTOTYPE1,
                               FileKind.TINYBREAKER_SDXL])
    assert str(caught.value) == (
        f"{path}: is a T5 encoder (float8_e4m3fn) (expected a TinyBreaker prototype0 checkpoint, "
        "TinyBreaker prototype1 checkpoint or TinyBreaker checkpoint with an SDXL refiner (.safetensors))")


def test_open_model_file_broken_and_unknown_files_name_the_expected_kind(tmp_path):
    pickle_path = write_pickle_checkpoint(tmp_path / "t5xxl.safetensors")
    with pytest.raises(ModelFileError) as caught:
        open_model_file(pickle_path, FileKind.T5_ENCODER)
    assert str(caught.value) == (f"{pickle_path}: looks like a pickle file (.ckpt/.pt/.bin); only .safetensors "
                                 "and GGUF files are loaded (expected a T5 encoder (.safetensors or .gguf))")
    sd1 = _write(tmp_path, "sd1", sd1_checkpoint_keys())
    with pytest.raises(ModelFileError, match=r"SD1/SD2 checkpoint .* \(expected a TinyBreaker prototype1 checkpoint"):
        open_model_file(sd1, FileKind.TINYBREAKER_PROTOTYPE1)
    with pytest.raises(ModelFileError, match=r"file not found \(expected a T5 encoder"):
        open_model_file(tmp_path / "missing.safetensors", FileKind.T5_ENCODER)

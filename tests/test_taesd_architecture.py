"""TinyEncoder/TinyDecoder match the index tables of docs/model-files.md "Tiny AutoEncoders (TAESD)", and compute
what diffusers' AutoencoderTiny computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from builders.taesd import taesd_decoder_state_dict, taesd_encoder_state_dict, tiny_vae_layout
from tinybreaker_ext.models.taesd import TinyDecoder, TinyEncoder

# docs/model-files.md "Tiny AutoEncoders (TAESD)", written out: index -> (kind, conv weight shape or None, has bias)
BLOCK = "block"
ENCODER_TABLE = {0: ("conv", (64, 3, 3, 3), True), 1: (BLOCK, None, None), 14: ("conv", (4, 64, 3, 3), True)}
ENCODER_TABLE.update({i: ("conv", (64, 64, 3, 3), False) for i in (2, 6, 10)})
ENCODER_TABLE.update({i: (BLOCK, None, None) for i in (3, 4, 5, 7, 8, 9, 11, 12, 13)})
DECODER_TABLE = {0: ("clamp", None, None), 1: ("conv", (64, 4, 3, 3), True), 2: ("relu", None, None),
                 18: (BLOCK, None, None), 19: ("conv", (3, 64, 3, 3), True)}
DECODER_TABLE.update({i: (BLOCK, None, None) for i in (3, 4, 5, 8, 9, 10, 13, 14, 15)})
DECODER_TABLE.update({i: ("upsample", None, None) for i in (6, 11, 16)})
DECODER_TABLE.update({i: ("conv", (64, 64, 3, 3), False) for i in (7, 12, 17)})
BLOCK_KEYS = {f"conv.{j}.{p}": (64, 64, 3, 3) if p == "weight" else (64,)
              for j in (0, 2, 4) for p in ("weight", "bias")}


def _params_by_index(module: nn.Sequential) -> dict[int, dict[str, tuple]]:
    found: dict[int, dict[str, tuple]] = {}
    for key, value in module.state_dict().items():
        index, rest = key.split(".", 1)
        found.setdefault(int(index), {})[rest] = tuple(value.shape)
    return found


@pytest.mark.parametrize("module, table, length",
                         [(TinyEncoder(), ENCODER_TABLE, 15), (TinyDecoder(), DECODER_TABLE, 20)],
                         ids=["encoder", "decoder"])
def test_indices_params_and_shapes_follow_the_spec_table(module, table, length):
    assert len(module) == length == len(table)
    params = _params_by_index(module)
    for index, (kind, shape, has_bias) in table.items():
        if kind == "conv":
            expected = {"weight": shape, **({"bias": (shape[0],)} if has_bias else {})}
            assert params[index] == expected, index
        elif kind == BLOCK:
            assert params[index] == BLOCK_KEYS, index  # same channels in and out: no skip conv
        else:
            assert index not in params, index


def test_parameter_counts_are_the_published_taesd_sizes():
    # encoder: 3→64 conv + 10 blocks + 3 stride-2 convs + 64→4 conv; decoder: 4→64 + 10 blocks + 3 convs + 64→3
    conv = 64 * 64 * 9
    blocks = 10 * 3 * (conv + 64)
    assert sum(p.numel() for p in TinyEncoder().parameters()) == (64 * 27 + 64) + blocks + 3 * conv + (4 * 576 + 4)
    assert sum(p.numel() for p in TinyDecoder().parameters()) == (64 * 36 + 64) + blocks + 3 * conv + (3 * 576 + 3)
    assert sum(p.numel() for p in TinyEncoder().parameters()) == 1_222_532  # diffusers AutoencoderTiny's encoder


def test_parameterless_decoder_layers_behave_as_specified():
    decoder = TinyDecoder()
    x = torch.linspace(-20, 20, 41).reshape(1, 1, 1, 41)
    torch.testing.assert_close(decoder[0](x), torch.tanh(x / 3) * 3)
    assert decoder[0](x).abs().max() < 3
    assert isinstance(decoder[2], nn.ReLU)
    small = torch.arange(4.0).reshape(1, 1, 2, 2)
    for index in (6, 11, 16):
        up = decoder[index](small)
        assert up.shape == (1, 1, 4, 4)
        assert torch.equal(up, small.repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_encoder_downsamples_by_eight_and_decoder_upsamples_by_eight():
    assert TinyEncoder()(torch.rand(2, 3, 48, 64)).shape == (2, 4, 6, 8)
    assert TinyDecoder()(torch.randn(2, 4, 6, 8)).shape == (2, 3, 48, 64)
    assert TinyEncoder(latent_channels=16)(torch.rand(1, 3, 16, 16)).shape == (1, 16, 2, 2)


def test_builder_keys_are_exactly_the_module_keys():
    assert set(taesd_encoder_state_dict()) == set(TinyEncoder().state_dict())
    assert set(taesd_decoder_state_dict()) == set(TinyDecoder().state_dict())


@pytest.mark.slow  # importing diffusers alone takes ~4 s
def test_same_outputs_as_diffusers_autoencoder_tiny():
    diffusers = pytest.importorskip("diffusers")
    enc_sd, dec_sd = taesd_encoder_state_dict(3), taesd_decoder_state_dict(3)
    reference = diffusers.AutoencoderTiny()
    reference.load_state_dict(tiny_vae_layout(enc_sd, dec_sd, "diffusers"))
    encoder, decoder = TinyEncoder(), TinyDecoder()
    encoder.load_state_dict(enc_sd)
    decoder.load_state_dict(dec_sd)
    images = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    latent = torch.randn(1, 4, 4, 5, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        # diffusers works on [-1, 1] images; TAESD on [0, 1]
        torch.testing.assert_close(encoder(images), reference.encoder(images * 2 - 1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(decoder(latent) * 2 - 1, reference.decoder(latent), rtol=1e-5, atol=1e-5)

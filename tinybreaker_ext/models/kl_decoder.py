"""The full SD1 KL-VAE decoder (ldm-named ``decoder.*`` + ``post_quant_conv.*``) run through diffusers' ``Decoder``
(docs/model-files.md "SD1 parts"); TinyBreaker files store no KL encoder."""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import ModelFileError
from ..files.state_dict import required_shape, shape_of, source_name
from ..latent_formats import SD1_SCALE
from .sd1_refiner import build_with_weights, require_diffusers

EXPECTED_DECODER = "an SD1 KL-VAE decoder with ldm names (decoder.*, post_quant_conv.*)"
_UP_LEVEL = re.compile(r"^decoder\.up\.(\d+)\.block\.(\d+)\.")


def infer_kl_decoder_config(state_dict: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> dict:
    """Keyword arguments for ``diffusers.models.autoencoders.vae.Decoder``, read from shapes."""
    keys = set(state_dict.keys())
    for key in ("decoder.conv_in.weight", "decoder.conv_out.weight", "post_quant_conv.weight"):  # all read unchecked
        required_shape(state_dict, key, source=source, expected=EXPECTED_DECODER, what="the KL decoder")
    blocks: dict[int, set[int]] = {}
    for match in map(_UP_LEVEL.match, keys):
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise ModelFileError(source, f"decoder up levels {sorted(blocks)} are not 0..n", EXPECTED_DECODER)
    per_level = {len(indices) for indices in blocks.values()}
    if len(per_level) != 1:
        raise ModelFileError(source, "decoder up levels hold different numbers of ResBlocks", EXPECTED_DECODER)
    return {
        "in_channels": shape_of(state_dict, "decoder.conv_in.weight")[1],
        "out_channels": shape_of(state_dict, "decoder.conv_out.weight")[0],
        "up_block_types": ["UpDecoderBlock2D"] * len(blocks),
        # encoder order: up.0 (full resolution) first
        "block_out_channels": [shape_of(state_dict, f"decoder.up.{level}.block.0.conv2.weight")[0]
                               for level in sorted(blocks)],
        "layers_per_block": per_level.pop() - 1,  # diffusers' count; each up level holds one more ResBlock
        "mid_block_add_attention": "decoder.mid.attn_1.q.weight" in keys,
    }


class KLDecoder(torch.nn.Module):
    """Model-space latent -> RGB image in [0, 1]; submodules under the names diffusers' converter gives them."""

    def __init__(self, config: dict, decoder_class, scale: float = SD1_SCALE):
        super().__init__()
        self.post_quant_conv = torch.nn.Conv2d(config["in_channels"], config["in_channels"], 1)
        self.decoder = decoder_class(**config)
        self.scale = scale
        self.config = config

    @torch.no_grad()
    def decode(self, model_latent: torch.Tensor) -> torch.Tensor:
        """``model_latent`` [B, 4, h, w] (raw x scale) -> float32 image [B, 3, 8h, 8w] in [0, 1]."""
        raw = model_latent.to(self.post_quant_conv.weight) / self.scale  # the weights' device and dtype
        image = self.decoder(self.post_quant_conv(raw))
        return ((image.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def load_kl_decoder(state_dict: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype,
                    scale: float = SD1_SCALE) -> KLDecoder:
    """Keys without ``first_stage_model.``; converted by diffusers' single-file converter (same in 0.31.0-0.42.1)."""
    decoder_class = require_diffusers("diffusers.models.autoencoders.vae").Decoder  # before reading any tensor
    single_file = require_diffusers("diffusers.loaders.single_file_utils")
    source = source_name(state_dict)
    config = infer_kl_decoder_config(state_dict, source=source)
    wanted = {key: state_dict[key] for key in state_dict.keys() if key.startswith(("decoder.", "post_quant_conv."))}
    levels = len(config["block_out_channels"])  # the converter walks as many levels as the config lists block types
    tensors = single_file.convert_ldm_vae_checkpoint(
        wanted, {"down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels})
    return build_with_weights(lambda: KLDecoder(config, decoder_class, scale), tensors,
                              device=device, dtype=dtype, source=source, expected=EXPECTED_DECODER)

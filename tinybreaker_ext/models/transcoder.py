"""The latent transcoder: TAESDXL decoder followed by the TAESD (SD1) encoder (docs/numerics.md "Transcoder").

In model space it is simply `z_sd1 = TAESD_enc(TAESDXL_dec(z_sdxl))`: no clamp and no blur in between.
The stored scale/shift scalars only matter for the raw-latent form used by ComfyUI, kept here for checks.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import ModelFileError
from ..latent_formats import SD1_SCALE, SDXL_SCALE
from .taesd import (TinyDecoder, TinyEncoder, build_decoder, build_encoder, indexed_part,
                    part_label, read_scalar, shift_decoder_indices, source_name)

# (scale key, shift key) per side, newest naming first; the oldest builder wrote `unnormalized_adapter_*`.
_INPUT_SCALARS = (("in_emu.scale_factor", "in_emu.shift_factor"),
                  ("unnormalized_adapter_in.scale_factor", "unnormalized_adapter_in.shift_factor"))
_OUTPUT_SCALARS = (("out_emu.scale_factor", "out_emu.shift_factor"),
                   ("unnormalized_adapter_out.scale_factor", "unnormalized_adapter_out.shift_factor"))


class Transcoder(nn.Module):
    """SDXL model-space latent → SD1 model-space latent. Submodules keep the file's names (`transd`, `transe`)."""

    def __init__(self, decoder: TinyDecoder, encoder: TinyEncoder, in_scale: float = SDXL_SCALE,
                 in_shift: float = 0.0, out_scale: float = SD1_SCALE, out_shift: float = 0.0):
        super().__init__()
        self.transd = decoder
        self.transe = encoder
        self.in_scale = float(in_scale)
        self.in_shift = float(in_shift)
        self.out_scale = float(out_scale)
        self.out_shift = float(out_shift)

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """SDXL model-space latent [B, 4, h, w] → float32 SD1 model-space latent of the same shape."""
        weight = self.transd[1].weight
        images = self.transd(latent.to(device=weight.device, dtype=weight.dtype))
        return self.transe(images).float()


def _strip_transcoder_prefix(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    if any(key.startswith("transcoder.") for key in state_dict.keys()):
        return {key[len("transcoder."):]: state_dict[key] for key in state_dict.keys()
                if key.startswith("transcoder.")}
    return state_dict


def _scalars(state_dict: Mapping[str, torch.Tensor], namings: tuple, default_scale: float,
             source: str) -> tuple[float, float]:
    for scale_key, shift_key in namings:
        if scale_key in state_dict:
            shift = read_scalar(state_dict, shift_key, source) if shift_key in state_dict else 0.0
            return read_scalar(state_dict, scale_key, source), shift
    return default_scale, 0.0


def load_transcoder(state_dict: Mapping[str, torch.Tensor], *, device: torch.device | str, dtype: torch.dtype,
                    source: str | None = None) -> Transcoder:
    """A Transcoder from `[transcoder.]transd.<i>.*` + `transe.<i>.*` (oldest builder: `decoder.`/`encoder.`).

    Scales come from `in_emu.*`/`out_emu.*` (or `unnormalized_adapter_{in,out}.*`), else 0.13025 / 0.18215;
    `transx.gaussian_blur_sigma` is ignored, as in the reference (it no longer blurs).
    """
    source = source_name(state_dict, source)
    decoder_what = part_label(state_dict, "transcoder decoder (transd)")
    encoder_what = part_label(state_dict, "transcoder encoder (transe)")
    state_dict = _strip_transcoder_prefix(state_dict)
    decoder_part = indexed_part(state_dict, "transd.") or indexed_part(state_dict, "decoder.")
    encoder_part = indexed_part(state_dict, "transe.") or indexed_part(state_dict, "encoder.")
    if not decoder_part:
        raise ModelFileError(source, "transcoder decoder (transd) weights not found", "keys like transd.1.weight")
    if not encoder_part:
        raise ModelFileError(source, "transcoder encoder (transe) weights not found", "keys like transe.0.weight")
    decoder = build_decoder(shift_decoder_indices(decoder_part), what=decoder_what, source=source)
    encoder = build_encoder(encoder_part, what=encoder_what, source=source)
    in_scale, in_shift = _scalars(state_dict, _INPUT_SCALARS, SDXL_SCALE, source)
    out_scale, out_shift = _scalars(state_dict, _OUTPUT_SCALARS, SD1_SCALE, source)
    transcoder = Transcoder(decoder, encoder, in_scale, in_shift, out_scale, out_shift)
    return transcoder.to(device=device, dtype=dtype)

"""The latent transcoder: TAESDXL decoder followed by the TAESD (SD1) encoder (docs/numerics.md "Transcoder").

In model space it is simply `z_sd1 = TAESD_enc(TAESDXL_dec(z_sdxl))`: no clamp and no blur in between. The stored
scale/shift scalars and blur sigma only matter for raw latents, which the pipeline never uses, so they are not read.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..files.state_dict import source_name
from .taesd import (TinyDecoder, TinyEncoder, build_decoder, build_encoder, indexed_part, part_label,
                    shift_decoder_indices)


class Transcoder(nn.Module):
    """SDXL model-space latent → float32 SD1 model-space latent of the same shape."""

    def __init__(self, decoder: TinyDecoder, encoder: TinyEncoder):
        super().__init__()
        self.transd = decoder
        self.transe = encoder

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        weight = self.transd[1].weight
        return self.transe(self.transd(latent.to(device=weight.device, dtype=weight.dtype))).float()


def load_transcoder(state_dict: Mapping[str, torch.Tensor], *, device: torch.device | str,
                    dtype: torch.dtype) -> Transcoder:
    """A Transcoder from `transd.<i>.*` + `transe.<i>.*` (the oldest builder wrote `decoder.`/`encoder.`), with the
    checkpoint's `transcoder.` prefix already removed."""
    source = source_name(state_dict)
    decoder_part = indexed_part(state_dict, "transd.") or indexed_part(state_dict, "decoder.")
    encoder_part = indexed_part(state_dict, "transe.") or indexed_part(state_dict, "encoder.")
    placed = {"source": source, "device": device, "dtype": dtype}
    decoder = build_decoder(shift_decoder_indices(decoder_part),
                            what=part_label(state_dict, "transcoder decoder (transd)"), **placed)
    return Transcoder(decoder, build_encoder(encoder_part, what=part_label(state_dict, "transcoder encoder (transe)"),
                                             **placed))

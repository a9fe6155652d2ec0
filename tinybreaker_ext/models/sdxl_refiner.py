"""The embedded SDXL refiner (docs/model-files.md "TinyBreaker files with an SDXL refiner"): its ldm-named UNet
through diffusers, its CLIP-L and OpenCLIP-bigG text encoders through transformers, and SDXL's conditioning as
ComfyUI builds it. PixArt's latent is already SDXL's, so nothing is transcoded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping

import torch

from ..files.state_dict import shape_of, with_prefix
from .clip_text import _special_tokens, encode_clip_tokens, load_clip_text, tokenize_clip_prompt
from .sd1_refiner import SD1Refiner, require_diffusers

CLIP_L_PREFIX = "embedders.0.transformer."  # under refiner.conditioner.: HF-transformers names (text_model.*)
CLIP_G_PREFIX = "embedders.1.model."  # OpenCLIP names (transformer.resblocks.*, text_projection …)
CLIP_G_PAD_TOKEN = 0  # SDXL's CLIP-G tokenizer pads with token 0 ("!"), CLIP-L with EOS
LATENT_PIXELS = 8


def convert_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text-tower names -> CLIPTextModelWithProjection names, with diffusers' own single-file converter
    (the fused q/k/v ``in_proj`` split in three, ``text_projection`` transposed)."""
    single_file = require_diffusers("diffusers.loaders.single_file_utils")
    hidden = shape_of(state_dict, "token_embedding.weight")[1]
    # The converter reads the width from `text_projection` (present here); the config stands in for a built model.
    return single_file.convert_open_clip_checkpoint(SimpleNamespace(config=SimpleNamespace(hidden_size=hidden)),
                                                    state_dict, prefix="")


def load_sdxl_text_encoders(conditioner: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype):
    """(CLIP-L ``CLIPTextModel``, bigG ``CLIPTextModelWithProjection``) from the keys under
    ``refiner.conditioner.`` (prefix removed)."""
    require_diffusers("diffusers.loaders.single_file_utils")  # before reading any tensor
    clip_l = load_clip_text(with_prefix(conditioner, CLIP_L_PREFIX), device=device, dtype=dtype)
    clip_g = load_clip_text(convert_open_clip_state_dict(with_prefix(conditioner, CLIP_G_PREFIX)), device=device,
                            dtype=dtype, hidden_act="gelu", with_projection=True)
    return clip_l, clip_g


def encode_sdxl_prompt(clip_l, clip_g, tokenizer, text: str) -> torch.Tensor:
    """ComfyUI-compatible SDXL conditioning for ``text`` as one tensor [1, 77 * chunks, 2048 + 1280] float32: the
    cross-attention tokens with the pooled embedding appended to every token's features. Carrying the pooled
    vector inside the context lets the CFG denoiser batch, repeat and group it like any SD1 context."""
    start, end = _special_tokens(tokenizer)
    tokens_l = tokenize_clip_prompt(tokenizer, text)
    tokens_g = tokenize_clip_prompt(tokenizer, text, pad=CLIP_G_PAD_TOKEN)
    hidden_l = encode_clip_tokens(clip_l, tokens_l, start=start, end=end, penultimate=True)
    hidden_g, pooled = encode_clip_tokens(clip_g, tokens_g, start=start, end=end, pad=CLIP_G_PAD_TOKEN,
                                          penultimate=True, pooled=True)
    context = torch.cat([hidden_l, hidden_g], dim=-1)
    return torch.cat([context, pooled[:, None, :].expand(-1, context.shape[1], -1)], dim=-1)


class SDXLRefiner(SD1Refiner):
    """An eps-predicting SDXL UNet, sampled on SD1's sigma table (the same 1000 'scaled_linear' betas,
    docs/numerics.md "Sigma tables"); its context is `encode_sdxl_prompt`'s."""

    def conditioning(self, x_scaled: torch.Tensor, context: torch.Tensor) -> dict:
        split = self.unet.config.cross_attention_dim  # token features; the pooled embedding follows
        height, width = x_scaled.shape[-2] * LATENT_PIXELS, x_scaled.shape[-1] * LATENT_PIXELS
        time_ids = torch.tensor([height, width, 0, 0, height, width], device=self.device, dtype=self.dtype)
        return {"encoder_hidden_states": context[..., :split],
                "added_cond_kwargs": {"text_embeds": context[:, 0, split:],
                                      "time_ids": time_ids.expand(x_scaled.shape[0], -1)}}

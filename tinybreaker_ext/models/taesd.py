"""Tiny AutoEncoder (TAESD, madebyollin) halves as TinyBreaker files store them, a small VAE wrapper
(docs/model-files.md "Tiny AutoEncoders (TAESD)") and the latent transcoder built from two halves
(docs/model-files.md "Transcoder files"). Images are [B, 3, H, W] in [0, 1]; latents are model space,
[B, C, H/8, W/8], with model = (raw − shift)·scale as in ComfyUI/diffusers. Shift is 0 for SD1 and SDXL; the
reference's own tiny VAE applies it with the opposite sign, which only matters for SD3/Flux latents (out of scope)."""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from ..errors import ModelFileError
from ..files.state_dict import required_shape, source_name, with_prefix
from ..latent_formats import SD1_SCALE
from .sd1_refiner import build_with_weights

_INDEXED_KEY = re.compile(r"^(\d+)\.(.+)$")
_EXPECTED = "a complete TAESD half in madebyollin's layout"


# --------------------------------------------------------------------------------------------- architecture

def _conv3x3(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, kernel_size=3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of the decoder input to (−3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """conv→ReLU→conv→ReLU→conv plus the identity, then ReLU (channels never change inside TAESD's blocks)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(_conv3x3(c, c), nn.ReLU(), _conv3x3(c, c), nn.ReLU(), _conv3x3(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + x)


class TinyEncoder(nn.Sequential):
    """RGB [0, 1] → model-space latent, ÷8 spatially (docs/model-files.md "Tiny AutoEncoders (TAESD)")."""

    def __init__(self, latent_channels: int = 4, hidden_channels: int = 64):
        c = hidden_channels
        layers: list[nn.Module] = [_conv3x3(3, c), Block(c)]
        for _ in range(3):
            layers += [_conv3x3(c, c, stride=2, bias=False), Block(c), Block(c), Block(c)]
        layers.append(_conv3x3(c, latent_channels))
        super().__init__(*layers)


class TinyDecoder(nn.Sequential):
    """Model-space latent → RGB, ≈[0, 1] unclamped, ×8 spatially (docs/model-files.md "Tiny AutoEncoders (TAESD)")."""

    def __init__(self, latent_channels: int = 4, hidden_channels: int = 64):
        c = hidden_channels
        layers: list[nn.Module] = [Clamp(), _conv3x3(latent_channels, c), nn.ReLU()]
        for _ in range(3):
            layers += [Block(c), Block(c), Block(c), nn.Upsample(scale_factor=2), _conv3x3(c, c, bias=False)]
        layers += [Block(c), _conv3x3(c, 3)]
        super().__init__(*layers)


# --------------------------------------------------------------------------------------------- key layouts

def part_label(state_dict: Mapping[str, torch.Tensor], part: str) -> str:
    """`part` plus the checkpoint prefix of a lazy file view, e.g. "TAESD decoder under 'first_stage_model.'"."""
    prefix = getattr(state_dict, "prefix", "")
    return f"{part} under '{prefix}'" if isinstance(prefix, str) and prefix else part


def indexed_part(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The `<prefix><int>.<rest>` entries as `<int>.<rest>`; other keys under the prefix are left out
    (e.g. an ldm KL decoder's `decoder.conv_in.*` next to a tiny encoder, or `encoder.vae_scale`)."""
    under = with_prefix(state_dict, prefix)  # a lazy view stays lazy: only the indexed tensors are read
    return {key: under[key] for key in under.keys() if _INDEXED_KEY.match(key)}


# --------------------------------------------------------------------------------------------- loading

def build_encoder(part: dict[str, torch.Tensor], *, what: str, source: str, device, dtype: torch.dtype) -> TinyEncoder:
    """A TinyEncoder sized from `0.weight` [hidden, 3, 3, 3] and `14.weight` [latent, hidden, 3, 3]."""
    hidden = required_shape(part, "0.weight", source=source, expected=_EXPECTED, what=what)[0]
    latent = required_shape(part, "14.weight", source=source, expected=_EXPECTED, what=what)[0]
    return build_with_weights(lambda: TinyEncoder(latent, hidden), part, device=device, dtype=dtype, source=source,
                              expected=_EXPECTED, what=what)


def build_decoder(part: dict[str, torch.Tensor], *, what: str, source: str, device, dtype: torch.dtype) -> TinyDecoder:
    """A TinyDecoder sized from `1.weight` [hidden, latent, 3, 3] (native indices; diffusers' are shifted first)."""
    if "0.weight" in part:  # diffusers numbers the decoder without the leading Clamp: move every index up by one
        shifted = {}
        for key, tensor in part.items():
            index, rest = _INDEXED_KEY.match(key).groups()
            shifted[f"{int(index) + 1}.{rest}"] = tensor
        part = shifted
    hidden, latent = required_shape(part, "1.weight", source=source, expected=_EXPECTED, what=what)[:2]
    return build_with_weights(lambda: TinyDecoder(latent, hidden), part, device=device, dtype=dtype, source=source,
                              expected=_EXPECTED, what=what)


class TinyVAE(nn.Module):
    """A TAESD encoder and/or decoder, each with the (scale, shift) of the latent space it emulates (prototype0
    pairs a TAESDXL encoder with a TAESD decoder). `encode`/`decode` work in model space; `decode` clamps to
    [0, 1] as the reference does per decode call (the bare TinyDecoder, like madebyollin's, does not)."""

    def __init__(self, encoder: TinyEncoder | None, decoder: TinyDecoder | None,
                 encoder_space: tuple[float, float], decoder_space: tuple[float, float], source: str = "<tiny VAE>"):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_space = encoder_space
        self.decoder_space = decoder_space
        self.source = source

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] → float32 model-space latent [B, C, H/8, W/8] on the encoder's device."""
        if self.encoder is None:
            raise ModelFileError(self.source, "contains no TAESD encoder", "a tiny VAE with an encoder")
        return self.encoder(images.to(self.encoder[0].weight)).float()  # the weights' device and dtype

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model-space latent → float32 images [B, 3, 8h, 8w] in [0, 1]."""
        if self.decoder is None:
            raise ModelFileError(self.source, "contains no TAESD decoder", "a tiny VAE with a decoder")
        return self.decoder(latent.to(self.decoder[1].weight)).float().clamp(0.0, 1.0)

    def raw_to_model(self, raw: torch.Tensor) -> torch.Tensor:
        """A raw latent of the decoder's space, ready for `decode`."""
        scale, shift = self.decoder_space
        return (raw - shift) * scale

    def model_to_raw(self, latent: torch.Tensor) -> torch.Tensor:
        """An `encode` result as a raw latent of the encoder's space."""
        scale, shift = self.encoder_space
        return latent / scale + shift


def load_tiny_vae(state_dict: Mapping[str, torch.Tensor], *, default_scale: float = SD1_SCALE,
                  device: torch.device | str, dtype: torch.dtype) -> TinyVAE:
    """A TinyVAE from the halves as TinyBreaker files store them: `encoder.<i>` / `decoder.<i>` with
    `<half>.vae_scale` / `<half>.vae_shift` scalars, else `default_scale` and shift 0; shapes decide the config."""
    source = source_name(state_dict)
    encoder = indexed_part(state_dict, "encoder.")
    decoder = indexed_part(state_dict, "decoder.")
    if not encoder and not decoder:
        raise ModelFileError(source, "no TAESD encoder or decoder weights found",
                             "keys like encoder.0.weight, decoder.1.weight")

    def space(half: str) -> tuple[float, float]:
        if f"{half}.vae_scale" not in state_dict:
            return float(default_scale), 0.0
        shift = _scalar(state_dict, f"{half}.vae_shift", source) if f"{half}.vae_shift" in state_dict else 0.0
        return _scalar(state_dict, f"{half}.vae_scale", source), shift

    encoder_space = space("encoder") if encoder else (1.0, 0.0)
    decoder_space = space("decoder") if decoder else (1.0, 0.0)
    placed = {"source": source, "device": device, "dtype": dtype}
    if encoder:
        encoder = build_encoder(encoder, what=part_label(state_dict, "TAESD encoder"), **placed)
    if decoder:
        decoder = build_decoder(decoder, what=part_label(state_dict, "TAESD decoder"), **placed)
    return TinyVAE(encoder or None, decoder or None, encoder_space, decoder_space, source)


def _scalar(state_dict: Mapping[str, torch.Tensor], key: str, source: str) -> float:
    """A one-element tensor as a Python float, exactly as stored (fp16 0.13025 stays 0.1302490234375)."""
    tensor = state_dict[key]
    if tensor.numel() != 1:
        raise ModelFileError(source, f"'{key}' has shape {tuple(tensor.shape)}", "a scalar")
    return float(tensor.reshape(-1)[0].item())


class Transcoder(nn.Module):
    """SDXL model-space latent → float32 SD1 model-space latent of the same shape: the TAESD encoder applied to the
    TAESDXL decoder's image, with no clamp and no blur in between (docs/numerics.md "Transcoder")."""

    def __init__(self, decoder: TinyDecoder, encoder: TinyEncoder):
        super().__init__()
        self.transd = decoder
        self.transe = encoder

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.transe(self.transd(latent.to(self.transd[1].weight))).float()


def load_transcoder(state_dict: Mapping[str, torch.Tensor], *, device: torch.device | str,
                    dtype: torch.dtype) -> Transcoder:
    """From `transd.<i>.*` + `transe.<i>.*` (the oldest builder's `decoder.`/`encoder.`), `transcoder.` removed; the
    stored scales and blur sigma are not read (docs/model-files.md "Transcoder files")."""
    placed = {"source": source_name(state_dict), "device": device, "dtype": dtype}
    decoder = build_decoder(indexed_part(state_dict, "transd.") or indexed_part(state_dict, "decoder."),
                            what=part_label(state_dict, "transcoder decoder (transd)"), **placed)
    encoder = build_encoder(indexed_part(state_dict, "transe.") or indexed_part(state_dict, "encoder."),
                            what=part_label(state_dict, "transcoder encoder (transe)"), **placed)
    return Transcoder(decoder, encoder)

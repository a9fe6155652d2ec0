"""Random TAESD halves and transcoders in the exact key layouts of the real files
(docs/model-files.md "Tiny AutoEncoders (TAESD)", docs/model-files.md "Transcoder files").

Keys are written from that section's index tables, not from the model code, so layout tests stay independent.
Weights are full size (64 channels, ~1.2 M parameters per half) with He-like scaling so activations stay
O(1) through all blocks; the decoder's last bias is 0.5 so its output sits around the [0, 1] image range.
"""

from __future__ import annotations

import math

import torch

ENCODER_CONVS = (0, 14)              # conv3×3 with bias (0: 3→hidden, 14: hidden→latent)
ENCODER_DOWNSAMPLES = (2, 6, 10)     # conv3×3 stride 2, no bias
ENCODER_BLOCKS = (1, 3, 4, 5, 7, 8, 9, 11, 12, 13)
DECODER_CONVS = (1, 19)              # conv3×3 with bias (1: latent→hidden, 19: hidden→3)
DECODER_UPSAMPLE_CONVS = (7, 12, 17)  # conv3×3 after nearest ×2, no bias
DECODER_BLOCKS = (3, 4, 5, 8, 9, 10, 13, 14, 15, 18)

SDXL_SCALE_FP16 = 0.1302490234375     # torch.tensor(0.13025, dtype=float16)
SD1_SCALE_FP16 = 0.18212890625        # torch.tensor(0.18215, dtype=float16)


def _conv(gen: torch.Generator, n_out: int, n_in: int, *, gain: float = math.sqrt(2.0)) -> torch.Tensor:
    return torch.randn(n_out, n_in, 3, 3, generator=gen) * (gain / math.sqrt(n_in * 9))


def _bias(gen: torch.Generator, n: int, offset: float = 0.0) -> torch.Tensor:
    return torch.randn(n, generator=gen) * 0.02 + offset


def _block(gen: torch.Generator, index: int, hidden: int) -> dict[str, torch.Tensor]:
    sd = {}
    for conv, gain in ((0, math.sqrt(2.0)), (2, math.sqrt(2.0)), (4, 0.3)):  # small last conv: residual stays O(1)
        sd[f"{index}.conv.{conv}.weight"] = _conv(gen, hidden, hidden, gain=gain)
        sd[f"{index}.conv.{conv}.bias"] = _bias(gen, hidden)
    return sd


def taesd_encoder_state_dict(seed: int = 0, latent_channels: int = 4, *, hidden_channels: int = 64,
                             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Native encoder keys without a prefix (`0.weight`, `1.conv.0.weight`, …, `14.bias`), as in
    madebyollin's `taesd_encoder.safetensors`."""
    gen = torch.Generator().manual_seed(seed)
    c = hidden_channels
    sd = {"0.weight": _conv(gen, c, 3), "0.bias": _bias(gen, c)}
    for index in range(1, 14):
        if index in ENCODER_DOWNSAMPLES:
            sd[f"{index}.weight"] = _conv(gen, c, c)
        else:
            sd.update(_block(gen, index, c))
    sd["14.weight"] = _conv(gen, latent_channels, c, gain=1.0)
    sd["14.bias"] = _bias(gen, latent_channels)
    return {key: value.to(dtype) for key, value in sd.items()}


def taesd_decoder_state_dict(seed: int = 0, latent_channels: int = 4, *, hidden_channels: int = 64,
                             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Native decoder keys without a prefix (`1.weight`, `3.conv.0.weight`, …, `19.bias`; index 0 is the
    parameter-less Clamp), as in madebyollin's `taesd_decoder.safetensors`."""
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    c = hidden_channels
    sd = {"1.weight": _conv(gen, c, latent_channels), "1.bias": _bias(gen, c)}
    for index in range(3, 19):
        if index in DECODER_UPSAMPLE_CONVS:
            sd[f"{index}.weight"] = _conv(gen, c, c)
        elif index in DECODER_BLOCKS:
            sd.update(_block(gen, index, c))
    sd["19.weight"] = _conv(gen, 3, c, gain=0.5)
    sd["19.bias"] = _bias(gen, 3, offset=0.5)
    return {key: value.to(dtype) for key, value in sd.items()}


def fp16_scalar(value: float) -> torch.Tensor:
    """A 0-d float16 tensor, as TinyBreaker's maketb.py stores every scalar."""
    return torch.tensor(value, dtype=torch.float16)


def _with_prefix(sd: dict[str, torch.Tensor] | None, prefix: str, index_shift: int = 0) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in (sd or {}).items():
        index, rest = key.split(".", 1)
        out[f"{prefix}{int(index) + index_shift}.{rest}"] = value
    return out


def tiny_vae_layout(encoder_sd: dict | None, decoder_sd: dict | None, layout: str, *,
                    encoder_scale: float | None = None, decoder_scale: float | None = None,
                    shift: float = 0.0) -> dict[str, torch.Tensor]:
    """Combine prefix-less halves into one file layout.

    - "native": `encoder.<i>`, `decoder.<i>`, plus fp16 0-d `<half>.vae_scale/vae_shift` when a scale is given
      (build_auxiliary.py / TinyBreaker checkpoints).
    - "comfy": `taesd_encoder.<i>`, `taesd_decoder.<i>`, plus top-level `vae_scale/vae_shift` (ComfyUI).
    - "diffusers": `encoder.layers.<i>`, `decoder.layers.<i − 1>` (no Clamp inside the Sequential), no scales.
    """
    if layout == "native":
        sd = {**_with_prefix(encoder_sd, "encoder."), **_with_prefix(decoder_sd, "decoder.")}
        for half, scale in (("encoder", encoder_scale), ("decoder", decoder_scale)):
            if scale is not None:
                sd[f"{half}.vae_scale"] = fp16_scalar(scale)
                sd[f"{half}.vae_shift"] = fp16_scalar(shift)
        return sd
    if layout == "comfy":
        sd = {**_with_prefix(encoder_sd, "taesd_encoder."), **_with_prefix(decoder_sd, "taesd_decoder.")}
        scale = encoder_scale if encoder_scale is not None else decoder_scale
        if scale is not None:
            sd["vae_scale"] = torch.tensor(scale)
            sd["vae_shift"] = torch.tensor(shift)
        return sd
    if layout == "diffusers":
        return {**_with_prefix(encoder_sd, "encoder.layers."), **_with_prefix(decoder_sd, "decoder.layers.", -1)}
    raise ValueError(f"unknown tiny VAE layout {layout!r}")


def transcoder_state_dict(seed: int = 0, naming: str = "new", *, dtype: torch.dtype = torch.float16,
                          prefix: str = "", hidden_channels: int = 64) -> dict[str, torch.Tensor]:
    """A transcoder: a TAESDXL-like decoder (`seed`) then a TAESD-like encoder (`seed + 1`).

    - "new" (what TinyBreaker checkpoints hold): `transd.<i>`, `transe.<i>`, fp16 0-d `in_emu.scale_factor`
      0.13025, `out_emu.scale_factor` 0.18215, shifts 0, `transx.gaussian_blur_sigma` 0.5.
    - "old" (TinyAutoEncoderConverter before 2025-01-12): `decoder.<i>`, `encoder.<i>`,
      `unnormalized_adapter_{in,out}.{scale,shift}_factor` and `gaussian_blur_sigma`, float32 of shape [1].
    """
    decoder = taesd_decoder_state_dict(seed, dtype=dtype, hidden_channels=hidden_channels)
    encoder = taesd_encoder_state_dict(seed + 1, dtype=dtype, hidden_channels=hidden_channels)
    if naming == "new":
        sd = {**_with_prefix(decoder, "transd."), **_with_prefix(encoder, "transe."),
              "in_emu.scale_factor": fp16_scalar(0.13025), "in_emu.shift_factor": fp16_scalar(0.0),
              "out_emu.scale_factor": fp16_scalar(0.18215), "out_emu.shift_factor": fp16_scalar(0.0),
              "transx.gaussian_blur_sigma": fp16_scalar(0.5)}
    elif naming == "old":
        sd = {**_with_prefix(decoder, "decoder."), **_with_prefix(encoder, "encoder."),
              "unnormalized_adapter_in.scale_factor": torch.tensor([0.13025]),
              "unnormalized_adapter_in.shift_factor": torch.tensor([0.0]),
              "unnormalized_adapter_out.scale_factor": torch.tensor([0.18215]),
              "unnormalized_adapter_out.shift_factor": torch.tensor([0.0]),
              "gaussian_blur_sigma": torch.tensor([0.5])}
    else:
        raise ValueError(f"unknown transcoder naming {naming!r}")
    return {prefix + key: value for key, value in sd.items()}

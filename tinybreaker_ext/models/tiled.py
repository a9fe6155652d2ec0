"""Tiled VAE encode/decode with linear-ramp blending, as the reference's "Tiny Encode/Decode" (docs/numerics.md
"Tiled VAE"). Callers pass the per-tile function (the reference clamps each decoded tile: TinyVAE.decode does)."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ParameterError


def blend_weights(core: int, pad: int) -> torch.Tensor:
    """1-d float32 mask of length core + 2·pad: `pad − pad//2` zeros, a ramp over 2·(pad//2) − 1 samples
    from 0 towards 1, ones, then the mirror image. Copies shifted by `core` sum to exactly 1 in the overlap."""
    gradient = pad // 2
    zero_border = pad - gradient
    ramp_length = 2 * gradient - 1
    length = core + 2 * pad

    def rising(i: int) -> float:
        if gradient == 0:  # no ramp room: a hard edge after the zero border (the reference leaves none here)
            return 1.0 if i >= zero_border else 0.0
        if i <= zero_border:
            return 0.0
        return min(1.0, (i - zero_border) / ramp_length)

    return torch.tensor([rising(min(i, length - 1 - i)) for i in range(length)], dtype=torch.float32)


def _tiled(fn: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor, *, canvas_hw: tuple[int, int],
           in_per_latent: int, out_per_latent: int, tile_px: int, overlap_percent: int, scale: int) -> torch.Tensor:
    """Shared loop; tile origins/extents are in latent units and multiplied by in/out units per latent."""
    if tile_px <= 0:
        raise ParameterError("tile_px", f"must be a positive number of pixels, got {tile_px}")
    if not 0 <= overlap_percent <= 100:
        raise ParameterError("overlap_percent", f"must be between 0 and 100, got {overlap_percent}")
    padding_px = int(tile_px) * int(overlap_percent) // 400
    step, pad = -(-tile_px // scale), -(-padding_px // scale)  # ceil divisions, in latent units
    latent_h = source.shape[-2] // in_per_latent
    latent_w = source.shape[-1] // in_per_latent
    if latent_h == 0 or latent_w == 0:
        raise ParameterError("image size", f"{tuple(source.shape[-2:])} is empty at {scale}x downscaling")
    rows, cols = range(-2 * pad, latent_h, step), range(-2 * pad, latent_w, step)
    device = source.device
    if len(rows) == 1 and len(cols) == 1:  # one tile covers the canvas with weight exactly 1: skip the blending
        return fn(source).to(device=device, dtype=torch.float32)[..., :canvas_hw[0], :canvas_hw[1]]

    extent = 2 * pad + step
    mask = blend_weights(step * out_per_latent, pad * out_per_latent).to(device)
    canvas = None
    for top in rows:
        for left in cols:
            y0, y1 = max(top, 0), min(top + extent, latent_h)
            x0, x1 = max(left, 0), min(left + extent, latent_w)
            tile_in = source[..., y0 * in_per_latent:y1 * in_per_latent, x0 * in_per_latent:x1 * in_per_latent]
            tile = fn(tile_in).to(device=device, dtype=torch.float32)
            oy, ox = y0 * out_per_latent, x0 * out_per_latent
            h = min(tile.shape[-2], (y1 - y0) * out_per_latent, canvas_hw[0] - oy)
            w = min(tile.shape[-1], (x1 - x0) * out_per_latent, canvas_hw[1] - ox)
            my, mx = (y0 - top) * out_per_latent, (x0 - left) * out_per_latent
            weights = mask[my:my + h, None] * mask[None, mx:mx + w]
            if canvas is None:
                canvas = torch.zeros(*tile.shape[:-2], *canvas_hw, dtype=torch.float32, device=device)
            canvas[..., oy:oy + h, ox:ox + w] += tile[..., :h, :w] * weights
    return canvas


def tiled_decode(decode_fn: Callable[[torch.Tensor], torch.Tensor], latent: torch.Tensor, *, tile_px: int = 512,
                 overlap_percent: int = 100, scale: int = 8) -> torch.Tensor:
    """Latent [B, C, h, w] → float32 image [B, 3, h·scale, w·scale] on the latent's device; `decode_fn` maps a
    latent tile [B, C, th, tw] to [B, 3, th·scale, tw·scale]."""
    canvas_hw = (latent.shape[-2] * scale, latent.shape[-1] * scale)
    return _tiled(decode_fn, latent, canvas_hw=canvas_hw, in_per_latent=1, out_per_latent=scale, tile_px=tile_px,
                  overlap_percent=overlap_percent, scale=scale)


def tiled_encode(encode_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, tile_px: int = 512,
                 overlap_percent: int = 100, scale: int = 8) -> torch.Tensor:
    """Images [B, 3, H, W] (H, W multiples of `scale`) → float32 latent [B, C, H/scale, W/scale]; the same tiling
    in latent units, the blending ramp over latent pixels."""
    height, width = images.shape[-2:]
    if height % scale or width % scale:
        raise ParameterError("image size", f"{width}x{height} must be a multiple of {scale} pixels on each side")
    return _tiled(encode_fn, images, canvas_hw=(height // scale, width // scale), in_per_latent=scale,
                  out_per_latent=1, tile_px=tile_px, overlap_percent=overlap_percent, scale=scale)

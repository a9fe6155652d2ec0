"""The Tiny Upscaler inside a WebUI generation: the host's VAE decodes our refined latent, the TinyBreaker
checkpoint's TAESD encodes/decodes the enlarged image, and the host's own SD1 model (LoRAs included) denoises the
tiles. Returns ``processing.DecodedSamples`` so the host skips its own decode and saves the upscaled images.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ..errors import Cancelled
from ..stage_params import StageParams
from ..upscaler import (tiny_upscale, tiny_vae_decode_fn, tiny_vae_encode_fn, upscaled_size, upscaler_sigmas,
                        upscaler_vae)
from .host_denoiser import HostDenoiser, host_conditioning
from . import progress
from .host_upscalers import find_upscaler, pre_upscale_function

log = logging.getLogger(__name__)


def run_tiny_upscaler(p, samples, engine, host, stage: StageParams, scale_by: float, mode: str = "upscaler",
                      upscale_model: str | None = None):
    """``samples``: the refined SD1 model-space latent [B, 4, h, w], or images the host already decoded (a list
    of CHW tensors in [-1, 1], e.g. from Hires fix). ``engine``: the job's ``TinyBreakerPipeline`` (its checkpoint's
    upscaler VAE); ``stage``: the plan's upscaler stage; ``mode``: ``upscaler`` or ``enhancer``;
    ``upscale_model``: the name of one of the host's upscalers, run before the tile refine, or None.

    Returns ``DecodedSamples`` of CHW tensors in [-1, 1] at round(H·k)×round(W·k) (``enhancer``: at H×W). On
    Interrupt/Skip the images are returned at their original size.
    """
    from modules import processing, shared

    decoded = decode_samples(p, samples)
    if shared.state.interrupted or shared.state.skipped:
        return processing.DecodedSamples(decoded)
    vae = upscaler_vae(engine)  # a clear error for prototype0 before any work
    pre_upscale = pre_upscale_function(find_upscaler(upscale_model), scale_by) if upscale_model else None
    images = ((torch.stack([image.float() for image in decoded]) + 1.0) / 2.0).clamp(0.0, 1.0)

    host.before_host_sampling(p)  # Forge/reForge: the LoRA-applied UNet and CLIP, not the refine pass's patched UNet
    sigmas = upscaler_sigmas(stage)
    width, height = upscaled_size(images.shape[-1], images.shape[-2], scale_by)
    cond, uncond = host_conditioning(p, stage.prompt, stage.negative, max(len(sigmas) - 1, 1), width, height)
    denoiser = HostDenoiser(p, cond, uncond, stage.cfg, sigmas)
    device = shared.device
    placement = host.placement()

    @contextlib.contextmanager
    def phase(name: str):
        if name == "pre_upscale":  # the host's upscaler places its own model
            yield
        elif name == "denoise":
            latent_h, latent_w = -(-height // 8), -(-width // 8)
            example = torch.zeros((1, 4, min(latent_h, 144), min(latent_w, 144)), device=device)
            with denoiser.active(example):
                yield
        else:
            with host.no_autocast(), placement.use(vae):
                yield

    try:
        upscaled = tiny_upscale(images, scale_by=scale_by, encode_fn=tiny_vae_encode_fn(vae),
                                decode_fn=tiny_vae_decode_fn(vae), denoiser=denoiser, stage=stage, device=device,
                                callback=progress.stage_callback("TinyBreaker: upscaler", 0, counted=False),
                                stage_context=phase, mode=mode, pre_upscale=pre_upscale)
    except Cancelled:
        log.info("TinyBreaker: upscaler interrupted; keeping the images at their original size")
        return processing.DecodedSamples(decoded)
    return processing.DecodedSamples([image * 2.0 - 1.0 for image in upscaled])


def decode_samples(p, samples) -> list[torch.Tensor]:
    """CHW images in [-1, 1] on the CPU: the host's own decode of a latent batch, or what it already decoded."""
    if getattr(samples, "already_decoded", False) or isinstance(samples, (list, tuple)):
        return [image.cpu() for image in samples]
    from modules import devices, processing

    return list(processing.decode_latent_batch(p.sd_model, samples, target_device=devices.cpu, check_for_nans=True))



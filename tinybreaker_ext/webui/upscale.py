"""The Tiny Upscaler inside a WebUI generation: the host's VAE decodes our latent, our TAESD encodes/decodes the
enlarged image, the host's SD1 model (LoRAs included) denoises the tiles (docs/hosts.md "Upscalers")."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from ..errors import Cancelled, ParameterError
from ..params import NO_UPSCALE_MODEL
from ..sampling.schedules import sd1_sigmas
from ..stage_params import StageParams
from ..upscaler import tiny_upscale, tiny_vae_decode_fn, tiny_vae_encode_fn, upscaled_size, upscaler_vae
from . import progress
from .host_denoiser import HostDenoiser, host_conditioning

log = logging.getLogger(__name__)


def run_tiny_upscaler(p, samples, engine, host, stage: StageParams, scale_by: float, mode: str = "upscaler",
                      upscale_model: str | None = None):
    """``samples``: the refined SD1 latent [B, 4, h, w], or images the host already decoded (CHW in [-1, 1], e.g.
    from Hires fix). Returns ``processing.DecodedSamples`` (the host skips its own decode) in [-1, 1] at
    round(H·k)×round(W·k) (``enhancer``: H×W); on Interrupt/Skip at the original size."""
    from modules import devices, processing, shared

    if getattr(samples, "already_decoded", False) or isinstance(samples, (list, tuple)):
        decoded = [image.cpu() for image in samples]  # what the host decoded already (Hires fix)
    else:
        decoded = list(processing.decode_latent_batch(p.sd_model, samples, target_device=devices.cpu,
                                                      check_for_nans=True))
    if shared.state.interrupted or shared.state.skipped:
        return processing.DecodedSamples(decoded)
    vae = upscaler_vae(engine)  # a clear error for prototype0 before any work
    pre_upscale = pre_upscale_function(find_upscaler(upscale_model), scale_by) if upscale_model else None
    images = ((torch.stack([image.float() for image in decoded]) + 1.0) / 2.0).clamp(0.0, 1.0)

    host.before_host_sampling(p)  # Forge/reForge: the LoRA-applied UNet and CLIP, not the refine pass's patched UNet
    sigmas = stage.sigmas(sd1_sigmas())
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


def host_upscalers() -> list:
    """The host's upscalers, in its order, without its "None" (our 'none' means the same)."""
    from modules import shared

    return [upscaler for upscaler in (getattr(shared, "sd_upscalers", None) or [])
            if str(getattr(upscaler, "name", "")).strip().lower() not in ("", NO_UPSCALE_MODEL)]


def find_upscaler(name: str):
    """The host's ``UpscalerData`` called ``name`` (exactly, else ignoring case); else a ParameterError listing all."""
    upscalers = host_upscalers()
    found = ([upscaler for upscaler in upscalers if upscaler.name == name]
             or [upscaler for upscaler in upscalers if str(upscaler.name).lower() == name.lower()])
    if found:
        return found[0]
    names = ", ".join(repr(str(upscaler.name)) for upscaler in upscalers) or "none installed"
    raise ParameterError("upscale_model", f"this WebUI has no upscaler named {name!r}; its upscalers: {names}, "
                                          f"or {NO_UPSCALE_MODEL!r}")


def pre_upscale_function(upscaler, scale_by: float):
    """Images [B, 3, H, W] in [0, 1] → the host upscaler's, about ``scale_by`` times larger (the Tiny Upscaler
    resizes them to its exact size)."""
    from ..image_files import pil_images

    def run(images: torch.Tensor) -> torch.Tensor:
        enlarged = [upscaler.scaler.upscale(image, scale_by, upscaler.data_path) for image in pil_images(images)]
        return torch.stack([torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
                            for image in enlarged]).permute(0, 3, 1, 2)

    return run

"""The replacement for txt2img's first pass: our base stage, then the host refines with its own sampler.

Installed as the instance attribute ``p.sample`` in ``process()``; every host calls it with keyword arguments
inside its generation loop. Exceptions raised here (unlike in script hooks) reach the UI and the API.
"""

from __future__ import annotations

import logging

import torch

from ..errors import Cancelled, ParameterError, TinyBreakerError
from . import progress
from .errors import request_error
from .inline_prompt import base_prompts
from .run_plan import RunPlan

log = logging.getLogger(__name__)

_ORIGINAL_ATTRIBUTE = "_tinybreaker_original_sample"


def install_sample(p, plan: RunPlan, host) -> None:
    if "sample" in p.__dict__ and not hasattr(p, _ORIGINAL_ATTRIBUTE):
        log.warning("TinyBreaker: another extension already replaced the first pass; TinyBreaker's replaces it")
    original = p.sample
    setattr(p, _ORIGINAL_ATTRIBUTE, original)

    def sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        if plan.error is not None:
            raise request_error(plan.error)
        if progress.is_upscale_rerun(p):
            # The gallery's "upscale" button re-runs only the hires pass on an existing image.
            return original(conditioning=conditioning, unconditional_conditioning=unconditional_conditioning,
                            seeds=seeds, subseeds=subseeds, subseed_strength=subseed_strength, prompts=prompts)
        try:
            return run_first_pass(p, plan, host, conditioning, unconditional_conditioning, seeds, subseeds,
                                  subseed_strength, prompts)
        except TinyBreakerError as error:
            raise request_error(error) from error

    p.sample = sample


def uninstall_sample(p) -> None:
    if hasattr(p, _ORIGINAL_ATTRIBUTE):
        p.__dict__.pop("sample", None)
        p.__dict__.pop(_ORIGINAL_ATTRIBUTE, None)


def run_first_pass(p, plan: RunPlan, host, conditioning, unconditional_conditioning, seeds, subseeds,
                   subseed_strength, prompts):
    from modules import devices, shared

    sd_model = p.sd_model
    check_host_model(host, sd_model)
    negatives = list(getattr(p, "negative_prompts", None) or [p.negative_prompt] * len(prompts))

    host.before_tinybreaker(sd_model)
    try:
        with host.no_autocast(), torch.inference_mode():
            latent = run_base_stage(p, plan, host, prompts, negatives, seeds)
    finally:
        host.after_tinybreaker(sd_model)
    progress.stage_done()

    # A copy made outside inference mode: A1111 samples under no_grad only, where an in-place update (by the host or
    # an extension's hook) of a tensor created in inference mode raises.
    samples = latent.to(shared.device, dtype=torch.float32).clone()
    if shared.state.interrupted:
        return samples
    if plan.refine_steps > 0 and plan.refine_strength > 0:
        samples = refine_with_host(p, plan, host, samples, conditioning, unconditional_conditioning, seeds,
                                   subseeds, subseed_strength)
        devices.torch_gc()
    # Hires fix runs even when the refine has no steps: p.init already counted its job and wrote its infotext.
    if getattr(p, "enable_hr", False) and not shared.state.interrupted:
        samples = chain_hires(p, samples, seeds, subseeds, subseed_strength, prompts)
    if plan.upscale and not shared.state.interrupted:
        from .upscale import run_tiny_upscaler

        progress.stage_done()
        samples = run_tiny_upscaler(p, samples, plan, host)
    return samples


def check_host_model(host, sd_model) -> None:
    if not host.is_sd1(sd_model) or host.latent_channels(sd_model) != 4:
        raise ParameterError(  # the host's checkpoint setting is at fault, not TinyBreaker's 'checkpoint' field
            "sd_model_checkpoint",
            f"the WebUI has {host.describe_model(sd_model)} loaded; TinyBreaker refines with an SD1 checkpoint "
            "(e.g. Photon): select one in the checkpoint list")


def run_base_stage(p, plan: RunPlan, host, prompts, negatives, seeds) -> torch.Tensor:
    """T5 + PixArt + transcoder at the txt2img size; returns an SD1 model-space latent [B, 4, H/8, W/8]."""
    engine = plan.load_engine(host)
    placement = host.placement()
    base = plan.base_stage
    callback = progress.base_stage_callback(plan.base_step_count * len(seeds), preview=engine.preview_image)
    texts = [plan.base_prompt(prompt) for prompt in base_prompts(p, prompts)]
    negative_texts = [plan.base_negative(negative) for negative in negatives]
    try:
        sdxl_latent = engine.base(texts, negative_texts, base, width=plan.base_width, height=plan.base_height,
                                  seeds=list(seeds), placement=placement, t5_mode=plan.t5_mode,
                                  callback=callback)
    except Cancelled:
        sdxl_latent = engine.last_denoised
    sd1_latent = engine.transcode(sdxl_latent, placement=placement)
    return sd1_latent[:, :, : p.height // 8, : p.width // 8]


def refine_with_host(p, plan: RunPlan, host, x, conditioning, unconditional_conditioning, seeds, subseeds,
                     subseed_strength):
    """A hires-style img2img pass with the host's sampler, noise, LoRAs, scripts and memory manager."""
    from modules import rng, sd_samplers

    host.before_host_sampling(p)
    p.sampler = sd_samplers.create_sampler(p.sampler_name, p.sd_model)
    if plan.params.image_shift:
        shifted = [seed + plan.params.image_shift for seed in seeds]
        p.rng = rng.ImageRNG(x.shape[1:], shifted, subseeds=subseeds, subseed_strength=subseed_strength,
                             seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w)
    noise = p.rng.next()
    if p.scripts is not None:
        p.scripts.process_before_every_sampling(p, x=x, noise=noise, c=conditioning, uc=unconditional_conditioning)
    if getattr(p, "modified_noise", None) is not None:  # Forge/reForge scripts may swap the noise
        noise, p.modified_noise = p.modified_noise, None

    saved_strength, saved_hr = p.denoising_strength, getattr(p, "is_hr_pass", False)
    p.denoising_strength = plan.refine_strength  # txt2img's field is Hires fix's strength: set only around the call
    p.is_hr_pass = False  # Forge/reForge would otherwise use the hires CFG and schedule
    try:
        return p.sampler.sample_img2img(p, x, noise, conditioning, unconditional_conditioning,
                                        steps=plan.refine_steps, image_conditioning=p.txt2img_image_conditioning(x))
    finally:
        p.denoising_strength, p.is_hr_pass = saved_strength, saved_hr


def chain_hires(p, samples, seeds, subseeds, subseed_strength, prompts):
    """Hires fix on top: hand our refined latent to the host's own second pass (same checkpoint)."""
    from modules import devices, processing

    decoded = None
    if getattr(p, "latent_scale_mode", None) is None:
        decoded = torch.stack(processing.decode_latent_batch(p.sd_model, samples, target_device=devices.cpu,
                                                             check_for_nans=True)).to(dtype=torch.float32)
    return p.sample_hr_pass(samples, decoded, seeds, subseeds, subseed_strength, prompts)

"""The replacement for txt2img's first pass (docs/hosts.md "The first pass", also on why errors are raised here).
Every host calls ``p.sample`` with keyword arguments, so ``sample``'s parameter names are the host's."""

from __future__ import annotations

import logging

import torch

from ..errors import Cancelled, ParameterError, TinyBreakerError
from . import progress
from .api import request_error
from .run_plan import RunPlan

log = logging.getLogger(__name__)


def install_sample(p, plan: RunPlan, host) -> None:
    """Replaces ``p.sample`` for this job, once per plan (why so late: docs/hosts.md "Queues and workers")."""
    current = p.__dict__.get("sample")
    if getattr(current, "tinybreaker_plan", None) is plan:
        return
    replaced = None if hasattr(current, "tinybreaker_plan") else current
    if replaced is not None:
        log.warning("TinyBreaker: another extension already replaced the first pass; TinyBreaker's replaces it")
    original = p.sample

    def sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        if plan.error is not None:
            raise request_error(plan.error)
        if progress.is_upscale_rerun(p):
            return original(conditioning=conditioning, unconditional_conditioning=unconditional_conditioning,
                            seeds=seeds, subseeds=subseeds, subseed_strength=subseed_strength, prompts=prompts)
        try:
            return run_first_pass(p, plan, host, conditioning, unconditional_conditioning, seeds, subseeds,
                                  subseed_strength, prompts)
        except TinyBreakerError as error:
            raise request_error(error) from error

    sample.tinybreaker_plan = plan
    sample.replaced = replaced
    p.sample = sample


def uninstall_sample(p) -> None:
    """Puts back the class's method, or another extension's replacement."""
    current = p.__dict__.get("sample")
    if not hasattr(current, "tinybreaker_plan"):
        return
    if current.replaced is not None:
        p.sample = current.replaced
    else:
        del p.__dict__["sample"]


def run_first_pass(p, plan: RunPlan, host, conditioning, unconditional_conditioning, seeds, subseeds,
                   subseed_strength, prompts):
    from modules import devices, shared

    sd_model = p.sd_model
    family = host.refiner_family(sd_model)
    if family is None:  # the host's checkpoint setting is at fault, not TinyBreaker's 'checkpoint' field
        raise ParameterError("sd_model_checkpoint", f"the WebUI has {host.describe_model(sd_model)} loaded; "
                             "TinyBreaker refines with an SD1 or SDXL checkpoint (e.g. Photon, Juggernaut XL): "
                             "select one in the checkpoint list")
    if plan.generation.params.upscale and family != "sd1":
        raise ParameterError("upscale", "the Tiny Upscaler refines tiles with an SD1 checkpoint (its tiny VAE is "
                                        f"SD1's); the WebUI has {family.upper()} loaded: use Hires fix instead")

    host.before_tinybreaker(sd_model)
    try:
        with host.no_autocast(), torch.inference_mode():
            latent = run_base_stage(p, plan, host, plan.texts, seeds, family)
    finally:
        host.after_tinybreaker(sd_model)
    shared.state.nextjob()

    # A copy made outside inference mode: A1111 samples under no_grad only, where an in-place update (by the host or
    # an extension's hook) of a tensor created in inference mode raises.
    samples = latent.to(shared.device, dtype=torch.float32).clone()
    if shared.state.interrupted:
        return samples
    if plan.generation.refine_steps > 0:
        host.before_host_sampling(p)
        refine = refine_with_reference_sampler if plan.generation.params.refine_sampler == "tinybreaker" else \
            refine_with_host_sampler
        samples = refine(p, plan, samples, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength)
        devices.torch_gc()
    # Hires fix runs even when the refine has no steps: p.init already counted its job and wrote its infotext.
    if getattr(p, "enable_hr", False) and not shared.state.interrupted:
        samples = chain_hires(p, host, samples, seeds, subseeds, subseed_strength, prompts)
    if plan.generation.params.upscale and not shared.state.interrupted:
        from .upscale import run_tiny_upscaler

        shared.state.nextjob()
        samples = run_tiny_upscaler(p, samples, plan.load_engine(host), host, plan.generation.upscaler,
                                    plan.generation.params.upscale_by, plan.generation.params.upscale_mode,
                                    plan.generation.params.pre_upscaler)
    return samples


def run_base_stage(p, plan: RunPlan, host, texts, seeds, family: str) -> torch.Tensor:
    """T5 + PixArt (+ the transcoder for SD1): the loaded checkpoint's model-space latent [B, 4, H/8, W/8]."""
    from modules import sd_samplers_common

    generation = plan.generation
    engine = plan.load_engine(host)
    if family == "sd1" and not engine.has_transcoder:
        raise ParameterError("checkpoint", f"{engine.checkpoint_info.description} has no transcoder to SD1's latent "
                                           "space: load an SDXL checkpoint in the WebUI, or choose an SD1 "
                                           "TinyBreaker file (prototype0/1)")
    placement = host.placement()
    # The live preview decodes with the transcoder's TAESDXL half; a file without one leaves it to the host's own
    # preview of its (SDXL) latents (store_latent: its preview decoder, its setting).
    preview = (progress.preview_when_due(engine.preview_image) if engine.has_transcoder
               else sd_samplers_common.store_latent)
    callback = progress.stage_callback("TinyBreaker: PixArt-Sigma base", generation.base_steps * len(seeds), preview)
    try:
        sdxl_latent = engine.base([item.base_prompt for item in texts], [item.base_negative for item in texts],
                                  generation.base, generation.base_sigmas, width=generation.base_width,
                                  height=generation.base_height, seeds=list(seeds), placement=placement,
                                  t5_mode=plan.memory.t5_mode, callback=callback)
    except Cancelled:  # Interrupt during the base: the latest estimate (all zeros before the first step)
        last = engine.last_denoised
        sdxl_latent = (torch.zeros(len(seeds), 4, generation.base_height // 8, generation.base_width // 8)
                       if last is None else last.float().cpu())
    latent = sdxl_latent if family == "sdxl" else engine.transcode(sdxl_latent, placement=placement)
    return latent[:, :, : p.height // 8, : p.width // 8]


def refine_with_reference_sampler(p, plan: RunPlan, x, conditioning, unconditional_conditioning, seeds, subseeds,
                                  subseed_strength):
    """The ``tinybreaker`` refine (docs/design.md "Refine modes"); every image's noise comes from the refine seed."""
    from modules import sd_samplers_common

    from ..sampling.schedules import sd1_sigmas
    from ..sampling.stage import sample_stage
    from .host_denoiser import HostDenoiser

    generation = plan.generation
    refine_seeds = [generation.refine.noise_seed] * x.shape[0]
    if p.scripts is not None:
        from ..sampling.noise import per_image_noise

        noise = per_image_noise(x.shape, refine_seeds, x.device)
        p.scripts.process_before_every_sampling(p, x=x, noise=noise, c=conditioning, uc=unconditional_conditioning)
    denoiser = HostDenoiser(p, conditioning, unconditional_conditioning, generation.refine.cfg,
                            generation.refine_sigmas)
    callback = progress.stage_callback("TinyBreaker: refine", generation.refine_steps,
                                       sd_samplers_common.store_latent)  # the host's own live preview
    last = [x]

    def on_step(step, total, latent, denoised):
        last[0] = latent
        callback(step, total, latent, denoised)

    try:
        with denoiser.active(x):
            return sample_stage(denoiser, x, generation.refine_sigmas, sampler=generation.refine.sampler,
                                seeds=refine_seeds, sigma_max=sd1_sigmas()[-1], callback=on_step)
    except Cancelled:  # Interrupt/Skip: the host keeps what was sampled so far, as its own samplers do
        return last[0]


def refine_with_host_sampler(p, plan: RunPlan, x, conditioning, unconditional_conditioning, seeds, subseeds,
                             subseed_strength):
    """The ``webui`` refine: a hires-style img2img pass with the host's sampler and noise, at the plan's strength."""
    from modules import rng, sd_samplers

    generation = plan.generation
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
    p.denoising_strength = generation.refine_strength  # txt2img's field is Hires fix's strength: set only around it
    p.is_hr_pass = False  # Forge/reForge would otherwise use the hires CFG and schedule
    try:
        return p.sampler.sample_img2img(p, x, noise, conditioning, unconditional_conditioning,
                                        steps=generation.refine_steps,
                                        image_conditioning=p.txt2img_image_conditioning(x))
    finally:
        p.denoising_strength, p.is_hr_pass = saved_strength, saved_hr


def chain_hires(p, host, samples, seeds, subseeds, subseed_strength, prompts):
    """Hires fix on our latent (pixel upscalers: decoded as docs/hosts.md "The first pass" says)."""
    from modules import devices, processing

    decoded = None
    if getattr(p, "latent_scale_mode", None) is None:
        decoded = host.first_pass_decoded(torch.stack(processing.decode_latent_batch(
            p.sd_model, samples, target_device=devices.cpu, check_for_nans=True)).to(dtype=torch.float32))
    return p.sample_hr_pass(samples, decoded, seeds, subseeds, subseed_strength, prompts)

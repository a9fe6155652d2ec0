"""A whole generation without a WebUI, plan → load → encode → base → transcode → refine → decode → (upscale), with
the SD1 or SDXL refiner embedded in the TinyBreaker file (docs/design.md "Data flow"). Every model is loaded in the
first phase, so a file problem shows before anything is computed."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .errors import ModelFileError, ParameterError
from .infotext import format_infotext
from .model_files import ModelFileSet
from .params import TinyBreakerParams
from .plan import GenerationPlan, ImageRequest, RandomSource, make_plan
from .prompt.file_defaults import FileDefaults
from .prompt.styles import StyleLibrary


@dataclass
class GenerationResult:
    images: torch.Tensor  # [B, 3, H, W] float32 in [0, 1]
    infotexts: list[str]
    plan: GenerationPlan
    refined: torch.Tensor  # the refined model-space latent [B, 4, H/8, W/8] (the refiner's family), before decoding


def plan_for(params: TinyBreakerParams, request: ImageRequest, *, rng: RandomSource | None = None,
             file_defaults: FileDefaults | None = None) -> GenerationPlan:
    """The plan with the built-in styles and the checkpoint's metadata defaults; the command line refines with the
    embedded model, so only the reference's refine sampling applies."""
    if params.refine_sampler != "tinybreaker":
        raise ParameterError("refine_sampler", f"{params.refine_sampler!r} needs a WebUI's sampler; the command line "
                                               "refines with the style's own ('tinybreaker')")
    return make_plan(params, request, StyleLibrary.load_builtin(), rng=rng, file_defaults=file_defaults)


def check_files_for_plan(files: ModelFileSet, plan: GenerationPlan) -> None:
    """What the plan's Tiny Upscaler asks of the files: prototype1's VAE, an upscale model spandrel can run."""
    from .files.classify import FileKind, classify
    from .upscale_models import check_upscale_model_file

    if plan.params.upscale and classify(files.checkpoint).kind != FileKind.TINYBREAKER_PROTOTYPE1:
        raise ModelFileError(files.checkpoint, "has no Tiny Upscaler VAE",
                             "tinybreaker_prototype1 for --upscale, or leave the upscaler off")
    if plan.params.upscale and plan.params.pre_upscaler:
        if not files.upscale_model:
            raise ParameterError("upscale_model", f"{plan.params.pre_upscaler!r} was not resolved to a file")
        check_upscale_model_file(files.upscale_model)


def run_plan(files: ModelFileSet, plan: GenerationPlan, *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, decoder: str = "high_quality",
             progress=None, t5_mode: str | None = None, compile: bool = False) -> GenerationResult:
    """Runs every stage of ``plan``; ``progress``: a ``console.ConsoleProgress`` or None (no reporting); ``t5_mode``
    overrides the plan's (the memory preflight resolves 'auto')."""
    from .pipeline import get_pipeline
    from .placement import MovePlacement
    from .standalone import EmbeddedRefiner
    from .upscale_models import load_upscale_model
    from .upscaler import upscale_with_embedded_refiner, upscaler_vae

    phase = progress.phase if progress else lambda *args: contextlib.nullcontext()
    device = torch.device(device)
    placement = MovePlacement(device)
    texts = plan.texts()
    t5_mode = t5_mode or plan.params.t5_mode

    sizes = ", ".join(f"{os.path.basename(path)} ({format_bytes(os.path.getsize(path))})"
                      for path in (files.checkpoint, files.t5))
    with phase("load", sizes):
        pipeline = get_pipeline(files.checkpoint, files.t5, device=device, dtype=dtype,
                                tokenizer_path=files.t5_tokenizer, tokenizer_search=files.tokenizer_search,
                                compile=compile)
        refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=files.clip_tokenizer,
                                  tokenizer_search=files.tokenizer_search)
        # Every model the plan uses, read now (the stages would load them on first use).
        pipeline.t5(t5_mode, placement)
        pipeline.tokenizer, pipeline.pixart, refiner.unet, refiner.text_encoder  # reading each property loads it
        refiner.decoder(decoder)
        if refiner.family == "sd1":
            pipeline.transcoder
        upscale_model = None
        if plan.params.upscale:
            upscaler_vae(pipeline)
            if plan.params.pre_upscaler:
                upscale_model = load_upscale_model(files.upscale_model)
    with phase("encode", "the prompts (T5 for the base, CLIP for the refine)"):
        for text in (texts.base_prompt, texts.base_negative):
            pipeline.encode(text, placement=placement, t5_mode=t5_mode)
        refine_texts = [texts.refine_prompt, texts.refine_negative]
        if plan.params.upscale:
            refine_texts += [plan.upscaler.prompt, plan.upscaler.negative]
        for text in refine_texts:
            refiner.encode(text, placement)
    with phase("base", _stage_detail("PixArt-Sigma", plan.base_steps, plan.base, plan.batch_size),
               plan.base_steps) as on_step:
        latent = pipeline.base([texts.base_prompt], [texts.base_negative], plan.base, plan.base_sigmas,
                               width=plan.base_width, height=plan.base_height, seeds=plan.seeds,
                               placement=placement, t5_mode=t5_mode, callback=on_step)
    if refiner.family == "sd1":
        with phase("transcode", "SDXL latent to SD1 latent (Tiny AutoEncoders)"):
            latent = pipeline.transcode(latent, placement=placement)
    latent = latent[:, :, :plan.height // 8, :plan.width // 8]
    family = refiner.family.upper()
    if plan.refine_steps:
        detail = _stage_detail(f"the embedded {family} model", plan.refine_steps, plan.refine, plan.batch_size)
        with phase("refine", detail, plan.refine_steps) as on_step:
            # The refine seed is the style's (plus the image shift) for every image, as in the reference.
            latent = refiner.refine(latent, [texts.refine_prompt], [texts.refine_negative], plan.refine,
                                    plan.refine_sigmas, seeds=[plan.refine.noise_seed] * plan.batch_size,
                                    placement=placement, callback=on_step)
    with phase("decode", f"{plan.width}x{plan.height} with the {decoder.replace('_', '-')} {family} decoder"):
        images = refiner.decode(latent, quality=decoder, placement=placement)
    if plan.params.upscale:
        with phase("upscale", upscale_detail(plan), plan.upscaler.steps) as on_step:
            images = upscale_with_embedded_refiner(refiner, images, plan.upscaler, plan.params.upscale_by,
                                                   placement=placement, callback=on_step,
                                                   mode=plan.params.upscale_mode, upscale_model=upscale_model)
    infotexts = [format_infotext(plan, index, model=files.checkpoint) for index in range(plan.batch_size)]
    return GenerationResult(images=images, infotexts=infotexts, plan=plan, refined=latent)


def upscale_detail(plan: GenerationPlan) -> str:
    """The upscale phase's status line: factor, sizes, mode and model."""
    width, height = plan.upscaled_size
    detail = f"x{plan.params.upscale_by:g} to {width}x{height}"
    if plan.params.upscale_mode == "enhancer":
        detail += " and back to {}x{} (enhancer)".format(*plan.output_size)
    if plan.params.pre_upscaler:
        detail += f", first with {os.path.basename(plan.params.pre_upscaler)}"
    return detail + " (Tiny Upscaler, 1024-px tiles)"


def _stage_detail(model: str, steps: int, stage, images: int) -> str:
    detail = f"{model}, {steps} steps of {stage.sampler}, CFG {stage.cfg:g}"
    return detail + (f", {images} images" if images > 1 else "")


def format_bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"

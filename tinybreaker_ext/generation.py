"""A whole generation without a WebUI: plan → encode → base → transcode → refine → decode → (upscale).

The command line, the end-to-end tests and the benchmarks use this. The numbers come from `plan.make_plan`, as in
the WebUI; only the refine model differs (here the SD1 model embedded in the TinyBreaker file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ParameterError
from .infotext import format_infotext
from .model_files import ModelFileSet
from .params import TinyBreakerParams
from .plan import GenerationPlan, ImageRequest, RandomSource, make_plan
from .prompt.styles import StyleLibrary


@dataclass
class GenerationResult:
    images: torch.Tensor  # [B, 3, H, W] float32 in [0, 1]
    infotexts: list[str]
    plan: GenerationPlan
    refined: torch.Tensor  # the refined SD1 model-space latent [B, 4, H/8, W/8], before decoding

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings

    def pil_images(self):
        from PIL import Image

        arrays = (self.images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        return [Image.fromarray(array) for array in arrays]

    def save(self, output: str) -> list[str]:
        """PNG files with an A1111 ``parameters`` text chunk; a batch gets ``_1``, ``_2`` … before the extension."""
        from PIL.PngImagePlugin import PngInfo

        root, extension = os.path.splitext(output)
        extension = extension or ".png"
        paths = []
        for index, (image, infotext) in enumerate(zip(self.pil_images(), self.infotexts)):
            path = output if len(self.infotexts) == 1 else f"{root}_{index + 1}{extension}"
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            info = PngInfo()
            info.add_text("parameters", infotext)
            image.save(path, pnginfo=info, compress_level=4)
            paths.append(path)
        return paths


def plan_for(params: TinyBreakerParams, request: ImageRequest, *, styles: StyleLibrary | None = None,
             rng: RandomSource | None = None) -> GenerationPlan:
    """The plan with the built-in styles (or ``styles``); the command line refines with the embedded SD1 model, so
    only the reference's refine sampling applies."""
    if params.refine_sampler != "tinybreaker":
        raise ParameterError("refine_sampler", f"{params.refine_sampler!r} needs a WebUI's sampler; the command line "
                                               "refines with the style's own ('tinybreaker')")
    return make_plan(params, request, styles or StyleLibrary.load_builtin(), rng=rng)


def generate_images(files: ModelFileSet, params: TinyBreakerParams, request: ImageRequest, *,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    decoder: str = "high_quality", progress: bool = False, styles: StyleLibrary | None = None,
                    rng: RandomSource | None = None) -> GenerationResult:
    from .pipeline import get_pipeline
    from .placement import MovePlacement
    from .standalone import EmbeddedRefiner

    plan = plan_for(params, request, styles=styles, rng=rng)
    pipeline = get_pipeline(files.checkpoint, files.t5, device=torch.device(device), dtype=dtype,
                            tokenizer_path=files.t5_tokenizer, tokenizer_search=files.tokenizer_search)
    refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=files.clip_tokenizer,
                              tokenizer_search=files.tokenizer_search)
    placement = MovePlacement(device)
    texts = plan.texts()

    with _progress_bar(progress, "base") as base_bar:
        latent = pipeline.base([texts.base_prompt], [texts.base_negative], plan.base, plan.base_sigmas,
                               width=plan.base_width, height=plan.base_height, seeds=plan.seeds,
                               placement=placement, t5_mode=params.t5_mode, callback=base_bar)
    latent = pipeline.transcode(latent, placement=placement)[:, :, :plan.height // 8, :plan.width // 8]
    with _progress_bar(progress, "refine") as refine_bar:
        # The refine seed is the style's (plus the image shift) for every image, as in the reference.
        latent = refiner.refine(latent, [texts.refine_prompt], [texts.refine_negative], plan.refine,
                                plan.refine_sigmas, seeds=[plan.refine.noise_seed] * plan.batch_size,
                                placement=placement, callback=refine_bar)
    images = refiner.decode(latent, quality=decoder, placement=placement)
    if plan.upscale:
        from .upscaler import upscale_with_embedded_refiner

        with _progress_bar(progress, "upscale") as upscale_bar:
            images = upscale_with_embedded_refiner(refiner, images, plan.upscaler, plan.upscale_by,
                                                   placement=placement, callback=upscale_bar)
    infotexts = [format_infotext(plan, index, model=files.checkpoint) for index in range(plan.batch_size)]
    return GenerationResult(images=images, infotexts=infotexts, plan=plan, refined=latent)


class _progress_bar:
    """A tqdm bar per stage that the core's progress callback drives (``callback(step, total, x, denoised)``)."""

    def __init__(self, enabled: bool, label: str):
        self.enabled = enabled
        self.label = label
        self.bar = None

    def __enter__(self):
        return self if self.enabled else None

    def __call__(self, step: int, total: int, x, denoised) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="step")
        self.bar.update(1)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False

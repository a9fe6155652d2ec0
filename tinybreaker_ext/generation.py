"""A whole generation without a WebUI: style + inline prompt → settings → base → transcode → refine → decode.

The command line, the end-to-end tests and the benchmarks use this; the WebUI replaces refine and decode with the
host's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .errors import ParameterError
from .model_files import ModelFileSet
from .prompt.apply import apply_inline_prompt
from .prompt.grammar import parse_inline_prompt
from .prompt.metadata import format_infotext, settings_image_size
from .prompt.styles import StyleLibrary
from .stage_params import GenerationSettings


@dataclass
class GenerationResult:
    images: torch.Tensor  # [B, 3, H, W] float32 in [0, 1]
    infotexts: list[str]
    settings: GenerationSettings
    warnings: list[str] = field(default_factory=list)

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


def resolve_settings(prompt: str, *, negative: str = "", style: str = "PHOTO", seed: int | None = None,
                     steps: int | None = None, cfg: float | None = None,
                     styles: StyleLibrary | None = None, warnings: list[str] | None = None) -> GenerationSettings:
    """Style first, then the prompt's inline parameters, then explicit overrides (which win)."""
    styles = styles or StyleLibrary.load_builtin()
    text = prompt if not negative else f"{prompt} --no {negative}"
    parsed = parse_inline_prompt(text)
    notes = warnings if warnings is not None else []
    notes.extend(parsed.warnings)
    settings = styles.apply(GenerationSettings(), style)
    settings = apply_inline_prompt(settings, parsed, styles, warnings=notes)
    if seed is not None:
        settings.base.noise_seed = int(seed)
    if steps is not None:
        settings.base.steps = int(steps)
    if cfg is not None:
        settings.base.cfg = float(cfg)
    return settings


def generate_images(files: ModelFileSet, *, prompt: str, negative: str = "", style: str = "PHOTO",
                    seed: int | None = None, steps: int | None = None, cfg: float | None = None,
                    width: int | None = None, height: int | None = None, batch: int | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, t5_mode: str = "auto",
                    decoder: str = "high_quality", progress: bool = False) -> GenerationResult:
    from .pipeline import get_pipeline
    from .placement import MovePlacement
    from .standalone import EmbeddedRefiner

    warnings: list[str] = []
    settings = resolve_settings(prompt, negative=negative, style=style, seed=seed, steps=steps, cfg=cfg,
                                warnings=warnings)
    if (width is None) != (height is None):
        raise ParameterError("width" if width is None else "height", "give both --width and --height, or neither")
    if width is None:
        width, height = settings_image_size(settings)
    count = int(batch or settings.image.batch_size or 1)
    if count < 1:
        raise ParameterError("batch", f"{count} must be at least 1")
    pipeline = get_pipeline(files.checkpoint, files.t5, device=torch.device(device), dtype=dtype,
                            tokenizer_path=files.t5_tokenizer, tokenizer_search=files.tokenizer_search)
    refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=files.clip_tokenizer,
                              tokenizer_search=files.tokenizer_search)
    placement = MovePlacement(device)
    base_seeds = [settings.base.noise_seed + index for index in range(count)]
    # The refiner seed is the style's (plus --image-shift) for every image, as in the reference; so image k of a
    # batch equals a single image made with base seed + k.
    refiner_seeds = [settings.refiner.noise_seed] * count

    with _progress_bar(progress, "base") as base_bar:
        latent = pipeline.base([settings.base.prompt], [settings.base.negative], settings.base, width=width,
                               height=height, seeds=base_seeds, placement=placement, t5_mode=t5_mode,
                               callback=base_bar)
    latent = pipeline.transcode(latent, placement=placement)
    with _progress_bar(progress, "refine") as refine_bar:
        latent = refiner.refine(latent, [settings.refiner.prompt], [settings.refiner.negative], settings.refiner,
                                seeds=refiner_seeds, placement=placement, callback=refine_bar)
    images = refiner.decode(latent, quality=decoder, placement=placement)
    if settings.image.enable_upscaler:
        from .upscaler import upscale_with_embedded_refiner

        with _progress_bar(progress, "upscale") as upscale_bar:
            images = upscale_with_embedded_refiner(refiner, images, settings, placement=placement,
                                                   callback=upscale_bar)

    model_name = os.path.splitext(os.path.basename(files.checkpoint))[0]
    infotexts = []
    for index in range(count):
        settings_i = _with_seed(settings, base_seeds[index])
        infotexts.append(format_infotext(settings_i, width=width, height=height, model=model_name))
    return GenerationResult(images=images, infotexts=infotexts, settings=settings, warnings=warnings)


def _with_seed(settings: GenerationSettings, seed: int) -> GenerationSettings:
    import copy

    result = copy.deepcopy(settings)
    result.base.noise_seed = seed
    return result


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

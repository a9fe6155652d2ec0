"""The one generation plan: parameters + style + inline ``--`` arguments + the requested image → what every stage
runs with; only `make_plan` turns styles or inline arguments into stage numbers (docs/design.md "One plan")."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Protocol

import torch

from . import params as fields
from .errors import ParameterError
from .limits import AreaLimits, TokenCounter, check_image_area, prompt_token_warnings
from .params import FROM_STYLE, TinyBreakerParams
from .prompt.file_defaults import FileDefaults
from .prompt.grammar import RANDOM_SEED_MAX, SEED_MAX, InlinePrompt, parse_inline_prompt
from .prompt.sizes import SIZE_MULTIPLE, image_size, snap_to_pixart, snap_to_step
from .prompt.styles import StyleLibrary
from .prompt.templates import apply_template, refiner_text
from .sampling.schedules import pixart_sigmas, sd1_sigmas, timestep_of
from .stage_params import StageParams

BATCH_SIZE_MAX = 16  # images per batch, twice A1111's slider (docs/design.md "Limits")
LATENT_MULTIPLE = 8  # pixels per latent pixel: the requested size must be a whole latent
DEFAULT_ASPECT = "1:1"  # the reference's default image: 1:1 at the "large" scale (1248x1248)


class RandomSource(Protocol):
    def randint(self, a: int, b: int) -> int: ...


@dataclass(frozen=True)
class ImageRequest:
    """What the front end asks besides the fields (docs/design.md "One plan"); a None size: from the inline aspect."""

    prompt: str = ""
    negative: str = ""
    width: int | None = None
    height: int | None = None
    seed: int = -1
    batch_size: int = 1
    size_step: int = LATENT_MULTIPLE  # a size computed from inline arguments snaps to this (the WebUI's slider step)
    area_limits: AreaLimits = AreaLimits()


@dataclass(frozen=True)
class StageTexts:
    """What T5 (base) and the SD1 model's CLIP (refine) encode for one image."""

    base_prompt: str
    base_negative: str
    refine_prompt: str
    refine_negative: str


@dataclass(frozen=True)
class GenerationPlan:
    params: TinyBreakerParams  # after the inline arguments (the style resolved): what the generation ran with
    prompt: str  # the user's text, inline arguments included (what infotext stores)
    negative: str  # the request's negative prompt (the inline --no is added in `texts`)
    width: int  # the image (before the Tiny Upscaler), multiples of 8
    height: int
    seed: int  # base seed of the first image; image k uses seed + k
    batch_size: int
    base: StageParams  # the style's base stage with the fields applied; its noise seed is the plan's seed
    base_sigmas: torch.Tensor  # on PixArt's table
    refine: StageParams  # the exact refine window; its noise seed is the refine seed (same for every image)
    refine_sigmas: torch.Tensor  # on SD1's table; empty = no refine
    refine_strength: float  # what the WebUI's own sampler gets in the `webui` refine mode
    upscaler: StageParams  # extra noise moved by the upscale-noise field
    warnings: tuple[str, ...] = ()
    random_seed: bool = False  # the seed was drawn (-1 or --seed random): printing it lets the user repeat the image

    @property
    def base_width(self) -> int:
        """PixArt takes whole 2x2 latent patches: the base runs rounded up to 16, the transcoded latent is cropped."""
        return _round_up(self.width, SIZE_MULTIPLE)

    @property
    def base_height(self) -> int:
        return _round_up(self.height, SIZE_MULTIPLE)

    @property
    def base_steps(self) -> int:
        return len(self.base_sigmas) - 1

    @property
    def refine_steps(self) -> int:
        return max(len(self.refine_sigmas) - 1, 0)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + index for index in range(self.batch_size)]

    @property
    def upscaled_size(self) -> tuple[int, int]:
        """(width, height) the Tiny Upscaler refines at: round(W·k) × round(H·k), in both modes."""
        return int(round(self.width * self.params.upscale_by)), int(round(self.height * self.params.upscale_by))

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the saved image (docs/design.md "One plan")."""
        if not self.params.upscale or self.params.upscale_mode == "enhancer":
            return self.width, self.height
        return self.upscaled_size

    def texts(self, prompt: str | None = None, negative: str | None = None) -> StageTexts:
        """The encoders' texts for one image. ``prompt`` (default: the plan's) may carry its own inline ``--no`` and
        ``--refine`` (a WebUI batch can hold different prompts); style and numbers are the plan's."""
        parsed = parse_inline_prompt(self.prompt if prompt is None else prompt)
        negative = _join(self.negative if negative is None else negative, str(parsed.values.get("no", "")))
        refine = refiner_text(str(parsed.values.get("refine", "")), parsed.prompt)
        return StageTexts(base_prompt=apply_template(self.base.prompt, parsed.prompt),
                          base_negative=apply_template(self.base.negative, negative),
                          refine_prompt=apply_template(self.refine.prompt, refine),
                          refine_negative=apply_template(self.refine.negative, negative))

    def summary(self) -> dict:
        """The plan as JSON data: the API's ``/tinybreaker/v1/plan`` answer."""
        def stage(values: StageParams, sigmas: torch.Tensor) -> dict:
            return {**dataclasses.asdict(values), "sigmas": [round(float(sigma), 6) for sigma in sigmas]}

        texts = self.texts()
        return {"params": self.params.as_dict(), "style": self.params.style, "width": self.width, "height": self.height,
                "output_size": list(self.output_size),
                "upscaled_size": list(self.upscaled_size) if self.params.upscale else None, "seeds": self.seeds,
                "refine_seed": self.refine.noise_seed, "refine_mode": self.params.refine_sampler,
                "refine_strength": self.refine_strength,
                "base_steps": self.base_steps, "refine_steps": self.refine_steps,
                "base": stage(self.base, self.base_sigmas), "refine": stage(self.refine, self.refine_sigmas),
                "upscaler": dataclasses.asdict(self.upscaler), "texts": dataclasses.asdict(texts),
                "warnings": list(self.warnings)}

    def recorded_params(self) -> TinyBreakerParams:
        """The fields infotext records: the base values that ran, the rest as given (docs/design.md "Infotext")."""
        unshifted_cfg = _clean(self.base.cfg - fields.CFG_SHIFT_STEP * self.params.cfg_shift)
        return self.params.replace(base_sampler=self.base.sampler, base_scheduler=self.base.scheduler,
                                   base_steps=self.base.steps, base_cfg=unshifted_cfg, refine_cfg=self.refine.cfg)


def make_plan(params: TinyBreakerParams, request: ImageRequest, styles: StyleLibrary, *,
              rng: RandomSource | None = None, t5_tokens: TokenCounter | None = None,
              file_defaults: FileDefaults | None = None) -> GenerationPlan:
    """Raises ParameterError (naming the field) for impossible values, limits.LimitError for sizes over the limits.
    ``t5_tokens`` (a T5 token counter) adds a warning for a prompt longer than the encoder takes."""
    file_defaults = file_defaults or FileDefaults()
    notes: list[str] = list(file_defaults.warnings)
    parsed = parse_inline_prompt(request.prompt)
    notes.extend(parsed.warnings)
    params = _apply_inline_fields(params, parsed, styles, notes)
    style_stages = styles.get(params.style, file_defaults.stages)

    seed, random_seed = _seed(request.seed, parsed, rng or random)
    batch_size = _batch_size(request.batch_size, parsed, notes)
    if seed + batch_size - 1 > SEED_MAX:
        raise ParameterError("seed", f"{seed} + {batch_size - 1} images passes the largest seed {SEED_MAX}")
    width, height = _image_size(request, parsed, notes, file_defaults)
    size_warning = snap_to_pixart(width, height)[2]
    if size_warning:
        notes.append(size_warning)

    if params.pre_upscaler and not params.upscale:
        notes.append(f"upscale_model '{params.pre_upscaler}' is unused: the Tiny Upscaler is off")

    base = _base_stage(style_stages["base"], params, parsed).copy(noise_seed=seed)
    base_sigmas = base.sigmas(pixart_sigmas())
    if len(base_sigmas) < 2:
        raise ParameterError("base_steps", f"the style '{params.style}' with these settings leaves no base step "
                                           "to run")
    refine, refine_sigmas, refine_strength = _refine_stage(style_stages["refiner"], params)
    upscaler = style_stages["upscaler"]
    upscaler = upscaler.copy(extra_noise=max(0.0, _clean(upscaler.extra_noise
                                                        + fields.UPSCALE_NOISE_STEP * params.upscale_noise)))
    plan = GenerationPlan(params=params, prompt=parsed.text, negative=request.negative, width=width, height=height,
                          seed=seed, batch_size=batch_size, base=base, base_sigmas=base_sigmas, refine=refine,
                          refine_sigmas=refine_sigmas, refine_strength=refine_strength, upscaler=upscaler,
                          warnings=tuple(notes), random_seed=random_seed)
    check_image_area(width, height, plan.upscaled_size if params.upscale else None, request.area_limits)
    if t5_tokens is not None:
        notes += t5_prompt_warnings(plan, t5_tokens)
        plan = dataclasses.replace(plan, warnings=tuple(notes))
    return plan


def t5_prompt_warnings(plan: GenerationPlan, t5_tokens: TokenCounter) -> list[str]:
    """Warnings for the plan's T5 texts (the style's templates applied) that the encoder will cut."""
    texts = plan.texts()
    return prompt_token_warnings([("prompt (with the style's template)", texts.base_prompt),
                                  ("negative prompt (with the style's template)", texts.base_negative)],
                                 t5_tokens, "T5")


# -- fields from the prompt's arguments ---------------------------------------------------------------------------
def _apply_inline_fields(params: TinyBreakerParams, parsed: InlinePrompt, styles: StyleLibrary,
                         notes: list[str]) -> TinyBreakerParams:
    values, changes = parsed.values, {}
    if "style" in values:
        wanted = str(values["style"])
        resolved = styles.resolve_name(wanted)
        if resolved is None:
            notes.append(f"--style {wanted}: no such style (ignored); known: {', '.join(styles.names())}")
        else:
            changes["style"] = resolved
    for argument, field, words in (("cfg-shift", "cfg_shift", None), ("image-shift", "image_shift", None),
                                   ("detail-level", "detail_level", fields.DETAIL_LEVEL_WORDS),
                                   ("upscale-noise", "upscale_noise", fields.UPSCALE_NOISE_WORDS)):
        if argument in values:
            value = values[argument]
            changes[field] = words[value] if isinstance(value, str) else _clamped(argument, field, value, notes)
    if "upscale" in values:  # on/off, or a mode (which turns it on)
        changes["upscale"] = values["upscale"] is not False
        if isinstance(values["upscale"], str):
            changes["upscale_mode"] = values["upscale"]
    if "upscale-model" in values:
        changes["upscale_model"] = str(values["upscale-model"])
    if "cfg-adjust" in values:  # a huge CFG delta would make a NaN image
        limit = fields.FIELD_BY_NAME["base_cfg"].maximum
        adjust = float(values["cfg-adjust"])
        if abs(adjust) > limit:
            notes.append(f"--cfg-adjust {adjust:g} is out of range (from {-limit:g} to {limit:g}); using "
                         f"{math.copysign(limit, adjust):g}")
            values["cfg-adjust"] = math.copysign(limit, adjust)
    if "variant" in values:  # deprecated: an absolute refine seed, kept as the image shift that gives it
        style = changes.get("style", params.style)
        changes["image_shift"] = _clamped("variant", "image_shift", int(values["variant"])
                                          - styles.get(style)["refiner"].noise_seed, notes)
    return params.replace(**changes) if changes else params


def _clamped(argument: str, field: str, value: int, notes: list[str]) -> int:
    spec = fields.FIELD_BY_NAME[field]
    clamped = int(min(max(value, spec.minimum), spec.maximum))
    if clamped != value:
        notes.append(f"--{argument} {value} is out of range ({spec.describe_allowed()}); using {clamped}")
    return clamped


def _seed(requested: int, parsed: InlinePrompt, rng: RandomSource) -> tuple[int, bool]:
    """(seed, whether it was drawn)."""
    seed = parsed.values.get("seed", requested)
    if seed in ("random", -1):
        return rng.randint(0, RANDOM_SEED_MAX), True
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ParameterError("seed", f"got {seed!r}; expected a whole number from 0 to {SEED_MAX}, or -1 (random)")
    return seed, False


def _batch_size(requested: int, parsed: InlinePrompt, notes: list[str]) -> int:
    if "batch-size" not in parsed.values:
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= BATCH_SIZE_MAX:
            raise ParameterError("batch_size", f"got {requested!r}; expected a whole number from 1 to "
                                               f"{BATCH_SIZE_MAX} (more images: more batches)")
        return requested
    size = int(parsed.values["batch-size"])
    if size > BATCH_SIZE_MAX:
        notes.append(f"--batch-size {size} is more than {BATCH_SIZE_MAX}; using {BATCH_SIZE_MAX}")
        return BATCH_SIZE_MAX
    return size


def _image_size(request: ImageRequest, parsed: InlinePrompt, notes: list[str],
                file_defaults: FileDefaults) -> tuple[int, int]:
    """The requested size, changed like the reference's: a named ratio or scale computes the size anew (keeping the
    current ratio if none is named), snapped to the front end's size step; an orientation alone turns the size."""
    values = parsed.values
    if (request.width is None) != (request.height is None):
        raise ParameterError("width" if request.width is None else "height", "give both width and height, or neither")
    width, height = request.width, request.height
    orientation = "portrait" if values.get("portrait") else "landscape" if values.get("landscape") else ""
    scale = next((name for name in ("large", "medium", "small") if values.get(name)), None)
    if width is None or "aspect" in values or scale:
        aspect = values.get("aspect") or (_aspect_of(width, height) if width is not None
                                          else file_defaults.aspect or DEFAULT_ASPECT)
        width, height = image_size(aspect, orientation, scale or file_defaults.scale)
        if request.size_step > LATENT_MULTIPLE:
            snapped = snap_to_step(width, height, request.size_step)
            if snapped != (width, height):
                notes.append(f"{width}x{height} snapped to {snapped[0]}x{snapped[1]}, multiples of the WebUI's size "
                             f"step {request.size_step}")
                width, height = snapped
    elif orientation and width != height and (width > height) != (orientation == "landscape"):
        width, height = height, width
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < LATENT_MULTIPLE or value % LATENT_MULTIPLE:
            raise ParameterError(name, f"{value!r} must be a positive multiple of {LATENT_MULTIPLE}")
    return width, height


def _aspect_of(width: int, height: int) -> tuple[int, int]:
    divisor = math.gcd(int(width), int(height)) or 1
    return int(width) // divisor, int(height) // divisor


# -- stages -------------------------------------------------------------------------------------------------------
def _base_stage(style_base: StageParams, params: TinyBreakerParams, parsed: InlinePrompt) -> StageParams:
    base = style_base.copy(
        sampler=style_base.sampler if params.base_sampler == FROM_STYLE else params.base_sampler,
        scheduler=style_base.scheduler if params.base_scheduler == FROM_STYLE else params.base_scheduler)
    if params.base_steps:
        base = base.copy(steps=params.base_steps, steps_start=min(base.steps_start, params.base_steps - 1))
    # --cfg-adjust: the deprecated raw CFG delta, clamped in _apply_inline_fields
    cfg = (params.base_cfg or base.cfg) + fields.CFG_SHIFT_STEP * params.cfg_shift + float(
        parsed.values.get("cfg-adjust", 0.0))
    return base.copy(cfg=_clean(cfg))


def _refine_stage(style_refiner: StageParams, params: TinyBreakerParams
                  ) -> tuple[StageParams, torch.Tensor, float]:
    """(stage, sigmas, strength) of the refine window (docs/design.md "One plan")."""
    nfactor = -10000 if params.detail_level <= fields.DETAIL_LEVEL_NONE else params.detail_level  # reference's 'none'
    refine = style_refiner.copy(steps_nfactor=nfactor, cfg=params.refine_cfg or style_refiner.cfg,
                                noise_seed=style_refiner.noise_seed + params.image_shift)
    if refine.noise_seed < 0:
        raise ParameterError("image_shift", f"{params.image_shift} makes the refine seed negative "
                                            f"({refine.noise_seed})")
    sigmas = refine.sigmas(sd1_sigmas())
    if len(sigmas) < 2:
        return refine, sigmas, 0.0
    strength = params.refine_strength or _strength(sigmas)
    if not (params.refine_steps or params.refine_strength):
        return refine, sigmas, strength
    steps = params.refine_steps or len(sigmas) - 1
    total = max(steps, int(round(steps / strength)))
    refine = refine.copy(steps=total, steps_start=total - steps, steps_end=10000, steps_nfactor=0)
    return refine, refine.sigmas(sd1_sigmas()), strength


def _strength(sigmas: torch.Tensor) -> float:
    """The denoising strength whose start timestep is the window's first sigma on SD1's table."""
    return round((int(timestep_of(sigmas[0], sd1_sigmas())) + 1) / 1000.0, 3)


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def _clean(number: float) -> float:
    """Shifted values rounded so 3.4 - 0.2 is 3.2, not 3.1999999999999997."""
    return round(float(number), 6)


def _join(text: str, extra: str) -> str:
    return ", ".join(part for part in ((text or "").strip(), (extra or "").strip()) if part)

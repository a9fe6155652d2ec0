"""Turns a parsed inline prompt into generation settings, in the reference's processing order (spec §6.3)."""

from __future__ import annotations

import copy
import random
from typing import TYPE_CHECKING, Protocol

from ..stage_params import GenerationSettings
from .grammar import DETAIL_LEVELS, RANDOM_SEED_MAX, UPSCALE_NOISE_LEVELS, InlinePrompt
from .sizes import SCALES, format_aspect
from .templates import apply_template

if TYPE_CHECKING:
    from .styles import StyleLibrary

CFG_SHIFT_STEP = 0.2
UPSCALE_NOISE_STEP = 0.2
_DECIMALS = 6  # shifted values are rounded so 3.4 - 0.2 is 3.2, not 3.1999999999999997


class RandomSource(Protocol):
    def randint(self, a: int, b: int) -> int: ...


def apply_inline_prompt(settings: GenerationSettings, parsed: InlinePrompt, styles: "StyleLibrary | None" = None,
                        *, rng: RandomSource | None = None, warnings: list[str] | None = None) -> GenerationSettings:
    """A new GenerationSettings: `settings` changed by the prompt and its arguments.

    `rng` draws `--seed random` (default: the `random` module); problems found here (an unknown `--style`) are
    appended to `warnings` when given.
    """
    notes = warnings if warnings is not None else []
    values = parsed.values
    result = copy.deepcopy(settings)

    if "style" in values:
        result = _apply_style(result, str(values["style"]), styles, notes)
    base, refiner, upscaler, image = result.base, result.refiner, result.upscaler, result.image

    prompt = parsed.prompt
    base.prompt = apply_template(base.prompt, prompt)
    negative = str(values.get("no", ""))
    base.negative = apply_template(base.negative, negative)
    refiner.negative = apply_template(refiner.negative, negative)
    refiner.prompt = apply_template(refiner.prompt, refiner_text(str(values.get("refine", "")), prompt))

    if "cfg-shift" in values:
        base.cfg = _clean(base.cfg + CFG_SHIFT_STEP * int(values["cfg-shift"]))
    if "image-shift" in values:
        refiner.noise_seed += int(values["image-shift"])
    if "upscale" in values:
        image.enable_upscaler = bool(values["upscale"])
    if "upscale-noise" in values:
        level = values["upscale-noise"]
        delta = UPSCALE_NOISE_LEVELS[level] if isinstance(level, str) else UPSCALE_NOISE_STEP * level
        upscaler.extra_noise = max(0.0, _clean(upscaler.extra_noise + delta))
    if "detail-level" in values:
        level = values["detail-level"]
        refiner.steps_nfactor = DETAIL_LEVELS[level] if isinstance(level, str) else int(level)
    if "seed" in values:
        seed = values["seed"]
        base.noise_seed = (rng or random).randint(0, RANDOM_SEED_MAX) if seed == "random" else int(seed)
    if "aspect" in values:
        image.aspect_ratio = format_aspect(*values["aspect"])
    orientation = next((name for name in ("portrait", "landscape") if name in values), None)
    if orientation:
        image.orientation = orientation
    scale = next((name for name in ("large", "medium", "small") if name in values), None)
    if scale:
        image.scale = SCALES[scale]
    if "batch-size" in values:
        image.batch_size = int(values["batch-size"])
    if "variant" in values:  # deprecated: absolute refiner seed
        refiner.noise_seed = int(values["variant"])
    if "cfg-adjust" in values:  # deprecated: raw CFG delta
        base.cfg = _clean(base.cfg + float(values["cfg-adjust"]))

    result.prompt = parsed.text
    return result


def refiner_text(refine: str, prompt: str) -> str:
    """What goes into the refiner prompt's template: `--refine` text (ending in '.') and a space before the prompt;
    `!text` alone replaces the prompt; no (or empty) `--refine` gives the prompt."""
    refine = refine.strip()
    if not refine:
        return prompt
    replaces_prompt = refine.startswith("!")
    text = refine[1:].strip() if replaces_prompt else refine
    if text and not text.endswith("."):
        text += "."
    if replaces_prompt or not prompt:
        return text
    return f"{text} {prompt}"


def _apply_style(settings: GenerationSettings, name: str, styles: "StyleLibrary | None",
                 notes: list[str]) -> GenerationSettings:
    if styles is None:
        notes.append(f"--style {name}: no styles are loaded (ignored)")
        return settings
    resolved = styles.resolve_name(name)
    if resolved is None:
        notes.append(f"--style: unknown style {name!r} (ignored); known: {', '.join(styles.names())}")
        return settings
    return styles.apply(settings, resolved)


def _clean(number: float) -> float:
    return round(float(number), _DECIMALS)

"""TinyBreaker's inline ``--`` parameters typed in the txt2img prompt box, applied to a WebUI generation.

In ``process()`` the first prompt's arguments change the generation (style, seed, size, batch size, CFG shift, image
shift, detail level, ``--no``); in ``process_batch()`` — after the host parsed LoRA tags and before it builds its
CLIP conditioning — the arguments are cut from the prompts the models see. ``p.all_prompts`` keeps them, so the
saved infotext reproduces the image.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from math import gcd

from ..params import FIELD_BY_NAME, TinyBreakerParams
from ..prompt.apply import refiner_text
from ..prompt.grammar import DETAIL_LEVELS, RANDOM_SEED_MAX, UPSCALE_NOISE_LEVELS, InlinePrompt, parse_inline_prompt
from ..prompt.sizes import image_size

log = logging.getLogger(__name__)

BASE_PROMPTS_ATTRIBUTE = "tinybreaker_base_prompts"  # per batch: the prompt text T5 sees
DETAIL_LEVEL_OFF = DETAIL_LEVELS["none"]


@dataclasses.dataclass
class InlineEffects:
    parsed: InlinePrompt
    refine_off: bool = False


def read_inline_prompt(p) -> InlinePrompt | None:
    prompts = getattr(p, "all_prompts", None) or [p.prompt]
    if "--" not in (prompts[0] or ""):
        return None
    return parse_inline_prompt(prompts[0])


def apply_to_params(params: TinyBreakerParams, parsed: InlinePrompt, style_names: list[str]) -> tuple[
        TinyBreakerParams, bool, list[str]]:
    """(new params, refine switched off by ``--detail-level none``, warnings). Inline values win over the accordion."""
    values, changes, notes = parsed.values, {}, []
    if "style" in values:
        wanted = str(values["style"])
        match = next((name for name in style_names if name.lower() == wanted.lower()), None)
        if match is None:
            notes.append(f"--style {wanted}: no such style (known: {', '.join(style_names)})")
        else:
            changes["style"] = match
    for name, field in (("cfg-shift", "cfg_shift"), ("image-shift", "image_shift")):
        if name in values:
            changes[field] = _clamped(field, int(values[name]), notes)
    if "upscale" in values:
        changes["upscale"] = bool(values["upscale"])
    if "upscale-noise" in values:
        level = values["upscale-noise"]
        if isinstance(level, str):  # level words move the style's extra noise by ±0.2 per step, like the numbers
            changes["upscale_noise"] = -5 if level == "none" else round(UPSCALE_NOISE_LEVELS[level] / 0.2)
        else:
            changes["upscale_noise"] = _clamped("upscale_noise", int(level), notes)
    refine_off = False
    if "detail-level" in values:
        level = values["detail-level"]
        number = DETAIL_LEVELS[level] if isinstance(level, str) else int(level)
        if number <= DETAIL_LEVEL_OFF:
            refine_off = True
        else:
            changes["detail_level"] = _clamped("detail_level", number, notes)
    return (params.replace(**changes) if changes else params), refine_off, notes


def apply_to_processing(p, parsed: InlinePrompt, *, rng: random.Random | None = None) -> list[str]:
    """Seed, size, batch size and ``--no`` change the host's own fields. Returns warnings."""
    values, notes = parsed.values, []
    if "seed" in values:
        seed = values["seed"]
        seed = (rng or random).randint(0, RANDOM_SEED_MAX) if seed in ("random", -1) else int(seed)
        p.seed = seed
        p.all_seeds = [seed + index for index in range(len(p.all_seeds))]
    if "batch-size" in values:
        _resize_batch(p, int(values["batch-size"]))
    _apply_size(p, values)
    negative = str(values.get("no", "")).strip()
    if negative:
        p.all_negative_prompts = [_join(text, negative) for text in p.all_negative_prompts]
        if hasattr(p, "all_hr_negative_prompts") and p.all_hr_negative_prompts:
            p.all_hr_negative_prompts = [_join(text, negative) for text in p.all_hr_negative_prompts]
    return notes


def strip_batch_prompts(p) -> None:
    """In process_batch: the host's CLIP sees prompt + ``--refine`` text, T5 sees the prompt, neither sees args."""
    parsed = [parse_inline_prompt(text) for text in p.prompts]
    setattr(p, BASE_PROMPTS_ATTRIBUTE, [item.prompt for item in parsed])
    p.prompts = [_host_prompt(item) for item in parsed]
    if getattr(p, "hr_prompts", None):
        p.hr_prompts = [_host_prompt(parse_inline_prompt(text)) for text in p.hr_prompts]


def _host_prompt(parsed: InlinePrompt) -> str:
    return refiner_text(str(parsed.values.get("refine", "")), parsed.prompt)


def base_prompts(p, prompts: list[str]) -> list[str]:
    stored = getattr(p, BASE_PROMPTS_ATTRIBUTE, None)
    return list(stored) if stored and len(stored) == len(prompts) else list(prompts)


def report(p, notes: list[str]) -> None:
    """Warnings go where the user sees them: the host's generation info (``p.comment``) and the console."""
    for note in notes:
        log.warning("TinyBreaker: %s", note)
        comment = getattr(p, "comment", None)
        if callable(comment):
            comment(f"TinyBreaker: {note}")


def _apply_size(p, values: dict) -> None:
    orientation = "portrait" if values.get("portrait") else "landscape" if values.get("landscape") else ""
    scale = next((name for name in ("large", "medium", "small") if values.get(name)), None)
    if "aspect" in values or scale:
        aspect = values.get("aspect") or _current_aspect(p)
        p.width, p.height = image_size(aspect, orientation, scale or "large")
    elif orientation and (p.width > p.height) != (orientation == "landscape") and p.width != p.height:
        p.width, p.height = p.height, p.width


def _current_aspect(p) -> str:
    divisor = gcd(int(p.width), int(p.height)) or 1
    return f"{int(p.width) // divisor}:{int(p.height) // divisor}"


def _resize_batch(p, batch_size: int) -> None:
    batch_size = max(1, batch_size)
    total = p.n_iter * batch_size
    for name in ("all_prompts", "all_negative_prompts", "all_hr_prompts", "all_hr_negative_prompts"):
        values = getattr(p, name, None)
        if values:
            setattr(p, name, [values[0]] * total)
    step = 0 if getattr(p, "subseed_strength", 0) else 1  # variation seeds keep one seed, as the host does
    p.all_seeds = [p.all_seeds[0] + index * step for index in range(total)]
    p.all_subseeds = [p.all_subseeds[0] + index for index in range(total)]
    p.batch_size = batch_size


def _clamped(field: str, value: int, notes: list[str]) -> int:
    spec = FIELD_BY_NAME[field]
    clamped = int(min(max(value, spec.minimum), spec.maximum))
    if clamped != value:
        notes.append(f"{field.replace('_', '-')} {value} is out of range; using {clamped}")
    return clamped


def _join(text: str, extra: str) -> str:
    return f"{text}, {extra}" if text.strip() else extra

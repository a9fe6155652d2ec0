"""The plan's effects on the host's own txt2img fields, and the texts the host's text encoder sees.

In ``process()`` the plan (which read the prompt's inline ``--`` arguments) may change the host's seed, size and
batch size. In ``process_batch()`` — after the host parsed LoRA tags and before it builds its CLIP conditioning —
each prompt becomes the style's refine prompt (template, ``--refine`` text, no arguments) and each negative the
style's refine negative (with the inline ``--no``). ``p.all_prompts`` and ``p.all_negative_prompts`` keep the
user's own text, so the saved infotext reproduces the image.
"""

from __future__ import annotations

import logging

from ..plan import GenerationPlan, ImageRequest, StageTexts
from ..prompt.grammar import parse_inline_prompt
from ..prompt.templates import refiner_text

log = logging.getLogger(__name__)


def apply_plan_to_fields(p, plan: GenerationPlan, request: ImageRequest) -> None:
    """Seed, size and batch size as the plan has them (the inline arguments win over the host's fields)."""
    if plan.batch_size != request.batch_size:
        _resize_batch(p, plan.batch_size)
    if plan.seed != request.seed or plan.batch_size != request.batch_size:
        _set_seeds(p, plan.seed)
    if (plan.width, plan.height) != (request.width, request.height):
        p.width, p.height = plan.width, plan.height


def batch_texts(p, plan: GenerationPlan) -> list[StageTexts]:
    """In process_batch: every image's texts from its own prompt; the host's CLIP then encodes the refine texts."""
    prompts = list(p.prompts)
    negatives = list(getattr(p, "negative_prompts", None) or [p.negative_prompt] * len(prompts))
    texts = [plan.texts(prompt, negative) for prompt, negative in zip(prompts, negatives)]
    p.prompts = [item.refine_prompt for item in texts]
    p.negative_prompts = [item.refine_negative for item in texts]
    if getattr(p, "hr_prompts", None):  # Hires fix on top: the user's prompt without arguments, plus --refine text
        p.hr_prompts = [_without_arguments(text) for text in p.hr_prompts]
    if getattr(p, "hr_negative_prompts", None):
        p.hr_negative_prompts = [_with_inline_negative(text, prompt)
                                 for text, prompt in zip(p.hr_negative_prompts, prompts)]
    return texts


WARNINGS_KEY = "TinyBreaker warnings"


def report(p, notes) -> None:
    """Warnings go where the user sees them: the console, the UI's generation info (``p.comment``) and, since no
    host returns those comments through the API, the infotext field ``TinyBreaker warnings`` (which the API answer
    carries in ``info``'s ``extra_generation_params`` and ``infotexts``)."""
    for note in notes:
        log.warning("TinyBreaker: %s", note)
        comment = getattr(p, "comment", None)
        if callable(comment):
            comment(f"TinyBreaker: {note}")
    extra = getattr(p, "extra_generation_params", None)
    if notes and isinstance(extra, dict):
        text = str(extra.get(WARNINGS_KEY, ""))
        for note in notes:
            if note not in text:  # a note may hold "; " itself, so the joined text is searched, not split
                text = f"{text}; {note}" if text else note
        extra[WARNINGS_KEY] = text


def _without_arguments(text: str) -> str:
    parsed = parse_inline_prompt(text)
    return refiner_text(str(parsed.values.get("refine", "")), parsed.prompt)


def _with_inline_negative(negative: str, prompt: str) -> str:
    extra = str(parse_inline_prompt(prompt).values.get("no", "")).strip()
    if not extra:
        return negative
    return f"{negative}, {extra}" if negative.strip() else extra


def _set_seeds(p, seed: int) -> None:
    total = len(p.all_seeds)
    step = 0 if getattr(p, "subseed_strength", 0) else 1  # variation seeds keep one seed, as the host does
    p.seed = seed
    p.all_seeds = [seed + index * step for index in range(total)]


def _resize_batch(p, batch_size: int) -> None:
    total = p.n_iter * batch_size
    for name in ("all_prompts", "all_negative_prompts", "all_hr_prompts", "all_hr_negative_prompts"):
        values = getattr(p, name, None)
        if values:
            setattr(p, name, [values[0]] * total)
    p.all_seeds = [p.all_seeds[0]] * total
    p.all_subseeds = [p.all_subseeds[0] + index for index in range(total)]
    p.batch_size = batch_size

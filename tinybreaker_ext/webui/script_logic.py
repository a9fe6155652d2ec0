"""What the TinyBreaker ``scripts.Script`` does at each hook (docs/hosts.md "The first pass"); the script file only
delegates here. Which texts the host encodes and keeps: docs/design.md "Refine modes"."""

from __future__ import annotations

import logging
import random
import weakref
from typing import Any, Sequence

from .. import params
from ..errors import ParameterError
from ..infotext import tb_fields
from ..plan import BATCH_SIZE_MAX, GenerationPlan, ImageRequest, StageTexts
from ..prompt.grammar import RANDOM_SEED_MAX, parse_inline_prompt, without_arguments
from ..prompt.templates import refiner_text
from . import first_pass, progress, run_plan
from .host import get_host
from .run_plan import RunPlan, build_run_plan, image_request
from .locations import style_library

log = logging.getLogger(__name__)

XYZ_OVERRIDES_ATTRIBUTE = "tinybreaker_overrides"  # set on p by our XYZ-plot axes
WARNINGS_KEY = "TinyBreaker warnings"
REFINER_FAMILY_KEY = "TinyBreaker refiner"  # infotext: which model family refined (SD1 or SDXL)
# The plan of each job in flight, kept beside p (docs/hosts.md "Queues and workers"). Keyed by id(p) with a weak
# reference to check identity: the hosts' processing classes are dataclasses, so p is unhashable.
_active_plans: dict[int, tuple[weakref.ref, RunPlan]] = {}


def active_plan(p) -> RunPlan | None:
    ref, plan = _active_plans.get(id(p), (None, None))
    return plan if ref is not None and ref() is p else None


def parse_args(args: Sequence[Any], warnings: list[str] | None = None
               ) -> tuple[params.TinyBreakerParams | None, ParameterError | None]:
    """Validated parameters, or the error unless the arguments clearly leave TinyBreaker off: none, the first dict's
    ``enabled`` false, or a leading False."""
    try:
        return params.from_script_args(args, warnings), None
    except ParameterError as error:
        named = next((arg for arg in args if isinstance(arg, dict)), {})
        switch = named["enabled"] if "enabled" in named else (args[0] if args else False)
        return None, (None if switch is False else error)


def before_process(p, *args) -> None:
    """An inline ``--seed`` or ``--batch-size`` becomes the host's own field (docs/hosts.md "Queues and workers")."""
    parsed, error = parse_args(args)
    if error is not None or parsed is None or not parsed.enabled or not isinstance(p.prompt, str):
        return
    inline = parse_inline_prompt(p.prompt).values
    if "seed" in inline:
        seed = inline["seed"]
        p.seed = random.randint(0, RANDOM_SEED_MAX) if seed == "random" else int(seed)
    if "batch-size" in inline:
        p.batch_size = min(int(inline["batch-size"]), BATCH_SIZE_MAX)
        if p.batch_size < int(inline["batch-size"]):
            report(p, [f"--batch-size {inline['batch-size']} is more than {BATCH_SIZE_MAX}; using {BATCH_SIZE_MAX}"])
    if "seed" in inline or "batch-size" in inline:
        p.prompt = without_arguments(p.prompt, {"seed", "batch-size"})


def process(p, *args) -> RunPlan | None:
    postprocess(p)  # a p whose job failed before postprocess must not keep a stale replacement or plan
    notes: list[str] = []
    parsed, error = parse_args(args, notes)
    if error is None and parsed is not None:
        overrides = getattr(p, XYZ_OVERRIDES_ATTRIBUTE, None)
        if overrides:
            try:
                parsed = parsed.replace(**overrides)
            except ParameterError as override_error:
                error = override_error
    if error is None and (parsed is None or not parsed.enabled):
        return None

    if error is not None:
        plan = RunPlan(params=params.TinyBreakerParams(enabled=True), error=error)
    else:
        request = image_request(p)
        plan = build_run_plan(parsed, request, style_library())
        if plan.generation is not None:
            apply_plan_to_fields(p, plan.generation, request)
            notes += plan.generation.warnings
    report(p, notes)
    if plan.error is None:
        run_plan.check(plan, get_host(), p.sd_model)  # before anything loads: resolves auto, refuses what won't fit
    if plan.error is None:
        apply_plan_to_processing(p, plan)
    for key in [key for key, (ref, _plan) in _active_plans.items() if ref() is None]:
        del _active_plans[key]  # jobs that failed before postprocess
    _active_plans[id(p)] = (weakref.ref(p), plan)
    return plan


def process_batch(p) -> None:
    """Each batch: the encoders' texts for its prompts, and our first pass in place of the host's."""
    plan = active_plan(p)
    if plan is None:
        return
    if plan.error is None:
        plan.texts = batch_texts(p, plan.generation)
    first_pass.install_sample(p, plan, get_host())


def apply_plan_to_processing(p, plan: RunPlan) -> None:
    """Host keys stay truthful: the refine runs with these steps and this CFG."""
    if getattr(p, "enable_hr", False):
        hr_checkpoint = getattr(p, "hr_checkpoint_name", None)
        if hr_checkpoint and hr_checkpoint != "Use same checkpoint":
            plan.error = ParameterError("Hires checkpoint", "TinyBreaker supports Hires fix with 'Use same "
                                                            f"checkpoint' only, got {hr_checkpoint!r}")
            return
    generation = plan.generation
    p.steps = generation.refine_steps or p.steps
    p.cfg_scale = generation.refine.cfg
    # Our fields and ComfyUI-TinyBreaker's (docs/design.md "Infotext"); postprocess_image sets each image's seed.
    p.extra_generation_params.update({**params.to_infotext(generation.recorded_params()),
                                     **tb_fields(generation, generation.seed)})
    family = get_host().refiner_family(p.sd_model)
    if family is not None:
        p.extra_generation_params[REFINER_FAMILY_KEY] = family.upper()
    progress.claim_job_count(p, generation.base_steps, generation.refine_steps, generation.params.upscale)


def postprocess_image(p) -> None:
    """Per image, right before the host writes its infotext: ComfyUI-TinyBreaker's fields with this image's seed
    (plain strings, so p stays JSON data)."""
    plan = active_plan(p)
    if plan is None or plan.error is not None:
        return
    index = int(getattr(p, "batch_index", 0) or 0)
    seeds = getattr(p, "seeds", None) or [plan.generation.seed]
    p.extra_generation_params.update(tb_fields(plan.generation, int(seeds[min(index, len(seeds) - 1)])))


def postprocess(p) -> None:
    first_pass.uninstall_sample(p)
    _active_plans.pop(id(p), None)


def apply_plan_to_fields(p, plan: GenerationPlan, request: ImageRequest) -> None:
    """Seed, size and batch size as the plan has them (the inline arguments win over the host's fields)."""
    if plan.batch_size != request.batch_size:
        total = p.n_iter * plan.batch_size
        for name in ("all_prompts", "all_negative_prompts", "all_hr_prompts", "all_hr_negative_prompts"):
            values = getattr(p, name, None)
            if values:
                setattr(p, name, [values[0]] * total)
        p.all_seeds = [p.all_seeds[0]] * total
        p.all_subseeds = [p.all_subseeds[0] + index for index in range(total)]
        p.batch_size = plan.batch_size
    if plan.seed != request.seed or plan.batch_size != request.batch_size:
        step = 0 if getattr(p, "subseed_strength", 0) else 1  # variation seeds keep one seed, as the host does
        p.seed = plan.seed
        p.all_seeds = [plan.seed + index * step for index in range(len(p.all_seeds))]
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
        p.hr_prompts = [refiner_text(str(parsed.values.get("refine", "")), parsed.prompt)
                        for parsed in map(parse_inline_prompt, p.hr_prompts)]
    if getattr(p, "hr_negative_prompts", None):
        p.hr_negative_prompts = [_with_inline_negative(text, prompt)
                                 for text, prompt in zip(p.hr_negative_prompts, prompts)]
    return texts


def report(p, notes) -> None:
    """Warnings go to the console, the UI's generation info (``p.comment``) and, since no host returns those comments
    through the API, the infotext field ``TinyBreaker warnings``."""
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


def _with_inline_negative(negative: str, prompt: str) -> str:
    extra = str(parse_inline_prompt(prompt).values.get("no", "")).strip()
    if not extra:
        return negative
    return f"{negative}, {extra}" if negative.strip() else extra

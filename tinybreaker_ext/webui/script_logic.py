"""What the TinyBreaker ``scripts.Script`` does at each hook; the script file itself only delegates here."""

from __future__ import annotations

import logging
import random
import weakref
from typing import Any, Sequence

from .. import params
from ..errors import ParameterError
from ..infotext import tb_fields, tinybreaker_fields
from ..plan import BATCH_SIZE_MAX
from ..prompt.grammar import RANDOM_SEED_MAX, parse_inline_prompt, without_arguments
from . import first_pass, inline_prompt, preflight, progress
from .host import get_host
from .run_plan import RunPlan, build_run_plan, image_request
from .styles_source import style_library

log = logging.getLogger(__name__)

XYZ_OVERRIDES_ATTRIBUTE = "tinybreaker_overrides"  # set on p by our XYZ-plot axes
REFINER_FAMILY_KEY = "TinyBreaker refiner"  # infotext: which model family refined (SD1 or SDXL)
# The plan of each job in flight, kept beside p rather than on it: queue and multi-machine tools copy p's
# attributes (JSON, pickle), which a plan holding tensors and models would break. Keyed by id(p) with a weak
# reference to check identity: the hosts' processing classes are dataclasses, so p is unhashable.
_active_plans: dict[int, tuple[weakref.ref, RunPlan]] = {}


def _remember(p, plan: RunPlan) -> None:
    for key in [key for key, (ref, _plan) in _active_plans.items() if ref() is None]:
        del _active_plans[key]  # jobs that failed before postprocess
    _active_plans[id(p)] = (weakref.ref(p), plan)


def active_plan(p) -> RunPlan | None:
    ref, plan = _active_plans.get(id(p), (None, None))
    return plan if ref is not None and ref() is p else None


def tb_generation_params(generation, seed: int) -> dict:
    """``p.extra_generation_params``: our fields and ComfyUI-TinyBreaker's (docs/design.md "Infotext") for the image
    with base seed ``seed``."""
    return {**tinybreaker_fields(generation), **tb_fields(generation, int(seed))}


def parse_args(args: Sequence[Any], warnings: list[str] | None = None
               ) -> tuple[params.TinyBreakerParams | None, ParameterError | None]:
    """Validated parameters, or the error when the caller clearly meant to enable TinyBreaker."""
    try:
        return params.from_script_args(args, warnings), None
    except ParameterError as error:
        if _enabled_hint(args) is False:
            return None, None
        return None, error


def before_process(p, *args) -> None:
    """Before the host builds its prompt and seed lists (and before queue and multi-machine tools copy the request):
    an inline ``--seed`` or ``--batch-size`` becomes the host's own seed or batch size and leaves the prompt. A
    distributing master then offsets each worker's seed from it, so workers make different images, instead of every
    worker reading the same ``--seed`` from the prompt (docs/hosts.md, "Queues and workers")."""
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
            inline_prompt.report(p, [f"--batch-size {inline['batch-size']} is more than {BATCH_SIZE_MAX}; "
                                     f"using {BATCH_SIZE_MAX}"])
    if "seed" in inline or "batch-size" in inline:
        p.prompt = without_arguments(p.prompt, {"seed", "batch-size"})


def process(p, *args) -> RunPlan | None:
    # A p processed before whose postprocess never ran (the job failed) must not keep a stale replacement or plan.
    first_pass.uninstall_sample(p)
    _active_plans.pop(id(p), None)
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
        plan = build_run_plan(p, parsed, style_library())
        if plan.generation is not None:
            inline_prompt.apply_plan_to_fields(p, plan.generation, request)
            notes += plan.generation.warnings
    inline_prompt.report(p, notes)
    if plan.error is None:
        preflight.check(plan, get_host(), p.sd_model)  # before anything loads: resolves auto, refuses what won't fit
    if plan.error is None:
        apply_plan_to_processing(p, plan)
    _remember(p, plan)
    return plan


def process_batch(p) -> None:
    """Each batch: the encoders' texts for its prompts, and our first pass in place of the host's."""
    plan = active_plan(p)
    if plan is None:
        return
    if plan.error is None:
        plan.texts = inline_prompt.batch_texts(p, plan.generation)
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
    p.extra_generation_params.update(tb_generation_params(generation, generation.seed))
    family = get_host().refiner_family(p.sd_model)
    if family is not None:
        p.extra_generation_params[REFINER_FAMILY_KEY] = family.upper()
    progress.claim_job_count(p, generation.base_steps, generation.refine_steps, generation.upscale)


def postprocess_image(p) -> None:
    """Per image, right before the host writes its infotext: ComfyUI-TinyBreaker's fields with this image's seed
    (plain strings, so p stays JSON data)."""
    plan = active_plan(p)
    if plan is None or plan.error is not None:
        return
    index = int(getattr(p, "batch_index", 0) or 0)
    seeds = getattr(p, "seeds", None) or [plan.generation.seed]
    p.extra_generation_params.update(tb_generation_params(plan.generation, seeds[min(index, len(seeds) - 1)]))


def postprocess(p) -> None:
    first_pass.uninstall_sample(p)
    _active_plans.pop(id(p), None)


def _enabled_hint(args: Sequence[Any]) -> bool | None:
    if not args:
        return False
    named = next((arg for arg in args if isinstance(arg, dict)), None)
    if named is not None and "enabled" in named:
        return named["enabled"] if isinstance(named["enabled"], bool) else None
    first = args[0]
    return first if isinstance(first, bool) else None

"""What the TinyBreaker ``scripts.Script`` does at each hook; the script file itself only delegates here."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

from .. import params
from ..errors import ParameterError, TinyBreakerError
from ..prompt.sizes import snap_to_pixart
from . import first_pass, inline_prompt, progress
from .infotext import tb_generation_params
from .host import get_host
from .run_plan import RunPlan, build_run_plan
from .styles_source import style_library

log = logging.getLogger(__name__)

XYZ_OVERRIDES_ATTRIBUTE = "tinybreaker_overrides"  # set on p by our XYZ-plot axes


def parse_args(args: Sequence[Any]) -> tuple[params.TinyBreakerParams | None, ParameterError | None]:
    """Validated parameters, or the error when the caller clearly meant to enable TinyBreaker."""
    try:
        return params.from_script_args(args), None
    except ParameterError as error:
        if _enabled_hint(args) is False:
            return None, None
        return None, error


def process(p, *args) -> RunPlan | None:
    # A p processed before whose postprocess never ran (the job failed) must not keep a stale replacement.
    first_pass.uninstall_sample(p)
    parsed, error = parse_args(args)
    if error is None and parsed is not None:
        overrides = getattr(p, XYZ_OVERRIDES_ATTRIBUTE, None)
        if overrides:
            try:
                parsed = parsed.replace(**overrides)
            except ParameterError as override_error:
                error = override_error
    if error is None and (parsed is None or not parsed.enabled):
        return None

    host = get_host()
    if error is not None:
        plan = RunPlan(params=params.TinyBreakerParams(enabled=True), error=error)
    else:
        try:
            parsed, refine_off = apply_inline_arguments(p, parsed)
            plan = build_run_plan(p, parsed, style_library())
            if refine_off and plan.generation is not None:
                plan.generation = dataclasses.replace(plan.generation, refine_steps=0)
        except TinyBreakerError as plan_error:
            plan = RunPlan(params=parsed, error=plan_error)
    if plan.error is None:
        apply_plan_to_processing(p, plan)
    first_pass.install_sample(p, plan, host)
    return plan


def apply_inline_arguments(p, parsed_params: params.TinyBreakerParams) -> tuple[params.TinyBreakerParams, bool]:
    """The prompt's ``--`` arguments: they win over the accordion, and change seed, size and batch size."""
    inline = inline_prompt.read_inline_prompt(p)
    if inline is None:
        return parsed_params, False
    new_params, refine_off, notes = inline_prompt.apply_to_params(parsed_params, inline, style_library().names())
    notes = list(inline.warnings) + notes + inline_prompt.apply_to_processing(p, inline)
    inline_prompt.report(p, notes)
    p.tinybreaker_inline = True
    return new_params, refine_off


def process_batch(p) -> None:
    if getattr(p, "tinybreaker_inline", False) and "sample" in p.__dict__:
        inline_prompt.strip_batch_prompts(p)


def apply_plan_to_processing(p, plan: RunPlan) -> None:
    """Host keys stay truthful: the host's sampler runs the refine with these steps and this CFG."""
    if getattr(p, "enable_hr", False):
        hr_checkpoint = getattr(p, "hr_checkpoint_name", None)
        if hr_checkpoint and hr_checkpoint != "Use same checkpoint":
            plan.error = ParameterError("Hires checkpoint", "TinyBreaker supports Hires fix with 'Use same "
                                                            f"checkpoint' only, got {hr_checkpoint!r}")
            return
    _width, _height, size_warning = snap_to_pixart(p.width, p.height)
    if size_warning:
        inline_prompt.report(p, [size_warning])
    p.steps = plan.refine_steps or p.steps
    p.cfg_scale = plan.refine_cfg
    p.extra_generation_params.update(params.to_infotext(effective_params(plan)))
    p.extra_generation_params.update(tb_generation_params(plan))
    progress.claim_job_count(p, plan.base_step_count, plan.refine_steps, plan.upscale)


def effective_params(plan: RunPlan) -> params.TinyBreakerParams:
    """What actually ran, written to infotext so a paste reproduces the image even if the style changes later."""
    generation = plan.generation
    return plan.params.replace(
        base_sampler=generation.base_stage.sampler,
        base_scheduler=generation.base_stage.scheduler,
        base_steps=generation.base_stage.steps,
        base_cfg=round(generation.base_stage.cfg, 4),
        refine_strength=generation.refine_strength,
        refine_steps=generation.refine_steps,
        refine_cfg=generation.refine_cfg,
        cfg_shift=0,  # already folded into base_cfg
    )


def postprocess(p) -> None:
    first_pass.uninstall_sample(p)
    p.__dict__.pop("tinybreaker_inline", None)
    p.__dict__.pop(inline_prompt.BASE_PROMPTS_ATTRIBUTE, None)


def _enabled_hint(args: Sequence[Any]) -> bool | None:
    if not args:
        return False
    named = next((arg for arg in args if isinstance(arg, dict)), None)
    if named is not None and "enabled" in named:
        return named["enabled"] if isinstance(named["enabled"], bool) else None
    first = args[0]
    return first if isinstance(first, bool) else None

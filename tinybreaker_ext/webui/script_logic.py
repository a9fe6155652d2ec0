"""What the TinyBreaker ``scripts.Script`` does at each hook; the script file itself only delegates here."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .. import params
from ..errors import ParameterError, TinyBreakerError
from . import first_pass, progress
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
            plan = build_run_plan(p, parsed, style_library())
        except TinyBreakerError as plan_error:
            plan = RunPlan(params=parsed, error=plan_error)
    if plan.error is None:
        apply_plan_to_processing(p, plan)
    first_pass.install_sample(p, plan, host)
    return plan


def apply_plan_to_processing(p, plan: RunPlan) -> None:
    """Host keys stay truthful: the host's sampler runs the refine with these steps and this CFG."""
    if getattr(p, "enable_hr", False):
        hr_checkpoint = getattr(p, "hr_checkpoint_name", None)
        if hr_checkpoint and hr_checkpoint != "Use same checkpoint":
            plan.error = ParameterError("Hires checkpoint", "TinyBreaker supports Hires fix with 'Use same "
                                                            f"checkpoint' only, got {hr_checkpoint!r}")
            return
    p.steps = plan.refine_steps or p.steps
    p.cfg_scale = plan.refine_cfg
    p.extra_generation_params.update(params.to_infotext(effective_params(plan)))
    progress.claim_job_count(p, plan.base_step_count, plan.refine_steps)


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


def _enabled_hint(args: Sequence[Any]) -> bool | None:
    if not args:
        return False
    named = next((arg for arg in args if isinstance(arg, dict)), None)
    if named is not None and "enabled" in named:
        return named["enabled"] if isinstance(named["enabled"], bool) else None
    first = args[0]
    return first if isinstance(first, bool) else None

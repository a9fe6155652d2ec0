"""From validated parameters and a style to the exact numbers each stage runs with (host-independent).

The base stage keeps the reference's sampler, schedule and step window. The refine stage runs on the host's
sampler, which is driven by a denoising strength and a step count: the style's refiner sigma window is mapped to
the strength whose start timestep matches it (exact for uniform schedules, close for the others).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError
from .params import FROM_STYLE, TinyBreakerParams
from .prompt.templates import apply_template
from .sampling.schedules import compute_sigmas, discrete_sigmas, timestep_of
from .stage_params import StageParams

CFG_SHIFT_STEP = 0.2  # the reference's --cfg-shift unit
UPSCALE_NOISE_STEP = 0.2  # the reference's --upscale-noise unit


@dataclass(frozen=True)
class GenerationPlan:
    params: TinyBreakerParams
    style: str
    base_stage: StageParams
    base_step_count: int
    refine_stage: StageParams
    refine_strength: float
    refine_steps: int
    refine_cfg: float
    upscaler_stage: StageParams

    def base_prompt(self, user_prompt: str) -> str:
        return apply_template(self.base_stage.prompt, user_prompt)

    def base_negative(self, user_negative: str) -> str:
        return apply_template(self.base_stage.negative, user_negative)


def plan_generation(params: TinyBreakerParams, style_stages: dict[str, StageParams], style: str) -> GenerationPlan:
    """``style_stages`` maps 'base'/'refiner'/'upscaler' to the style's StageParams."""
    base = style_stages["base"].copy()
    if params.base_sampler != FROM_STYLE:
        base = base.copy(sampler=params.base_sampler)
    if params.base_scheduler != FROM_STYLE:
        base = base.copy(scheduler=params.base_scheduler)
    if params.base_steps:
        base = base.copy(steps=params.base_steps, steps_start=min(base.steps_start, params.base_steps - 1))
    if params.base_cfg:
        base = base.copy(cfg=params.base_cfg)
    if params.cfg_shift:
        base = base.copy(cfg=round(base.cfg + CFG_SHIFT_STEP * params.cfg_shift, 6))
    base_sigmas = _stage_sigmas(base, pixart=True)
    if len(base_sigmas) < 2:
        raise ParameterError("base_steps", f"the style '{style}' with these settings leaves no base step to run")

    refine = style_stages["refiner"].copy(steps_nfactor=style_stages["refiner"].steps_nfactor + params.detail_level)
    refine_sigmas = _stage_sigmas(refine, pixart=False)
    style_steps = max(len(refine_sigmas) - 1, 0)
    style_strength = 0.0
    if style_steps:
        style_strength = round((int(timestep_of(refine_sigmas[0], _sd1_sigmas())) + 1) / 1000.0, 3)
    upscaler = style_stages["upscaler"]
    upscaler = upscaler.copy(extra_noise=max(0.0, round(upscaler.extra_noise + UPSCALE_NOISE_STEP * params.upscale_noise,
                                                         6)))
    return GenerationPlan(
        params=params,
        style=style,
        base_stage=base,
        base_step_count=len(base_sigmas) - 1,
        refine_stage=refine,
        refine_strength=params.refine_strength or style_strength,
        refine_steps=params.refine_steps or style_steps,
        refine_cfg=params.refine_cfg or refine.cfg,
        upscaler_stage=upscaler,
    )


_SIGMA_TABLES: dict[str, object] = {}


def _pixart_sigmas():
    if "pixart" not in _SIGMA_TABLES:
        _SIGMA_TABLES["pixart"] = discrete_sigmas("linear")
    return _SIGMA_TABLES["pixart"]


def _sd1_sigmas():
    if "sd1" not in _SIGMA_TABLES:
        _SIGMA_TABLES["sd1"] = discrete_sigmas("scaled_linear")
    return _SIGMA_TABLES["sd1"]


def _stage_sigmas(stage: StageParams, *, pixart: bool):
    return compute_sigmas(_pixart_sigmas() if pixart else _sd1_sigmas(), sampler=stage.sampler,
                          scheduler=stage.scheduler, steps=stage.steps, steps_start=stage.steps_start,
                          steps_end=stage.steps_end, steps_nfactor=stage.steps_nfactor)

"""Infotext of a planned generation, the same from both front ends (docs/design.md, "Infotext").

Every image carries our own fields (``TinyBreaker: on``, ``TinyBreaker style: …``, one per ``params.FIELDS`` entry,
so PNG Info → Send to txt2img restores the accordion) and ComfyUI-TinyBreaker's three (``TB style``,
``TB base parameters``, ``TB refiner parameters``). The command line writes the whole text, with the reference's
standard fields first; in the WebUI the host writes its own standard fields and adds these.
"""

from __future__ import annotations

import os

from . import params
from .plan import GenerationPlan
from .prompt.metadata import (TB_BASE_PARAMETERS, TB_REFINER_PARAMETERS, TB_STYLE, format_number,
                              format_stage_parameters, quote_infotext_value, resolve_random_seed)
from .prompt.sampler_names import a1111_sampler_name
from .sampling.schedules import step_window
from .stage_params import StageParams


def tinybreaker_fields(plan: GenerationPlan) -> dict[str, object]:
    """Our fields: the parameters the generation ran with (``params.to_infotext``)."""
    return params.to_infotext(plan.recorded_params())


def tb_fields(plan: GenerationPlan, seed: int) -> dict[str, str]:
    """ComfyUI-TinyBreaker's fields for the image with base seed ``seed``; the refine seed is the same for all."""
    return {TB_STYLE: plan.style,
            TB_BASE_PARAMETERS: format_stage_parameters(plan.base.copy(noise_seed=int(seed))),
            TB_REFINER_PARAMETERS: format_stage_parameters(_window(plan.refine))}


def format_infotext(plan: GenerationPlan, index: int = 0, *, model: str | None = None) -> str:
    """The command line's whole infotext for image ``index`` of the batch: the prompt as typed (``--seed random``
    replaced by the seed used), the negative prompt, the reference's fields (Steps = base + refine steps, the base
    sampler and CFG, as ComfyUI-TinyBreaker writes them), then ours."""
    seed = plan.seeds[index]
    width, height = plan.output_size
    fields: dict[str, object] = {"Steps": plan.base_steps + plan.refine_steps}
    sampler = a1111_sampler_name(plan.base.sampler, plan.base.scheduler)
    if sampler:
        fields["Sampler"] = sampler
    fields.update({"CFG scale": format_number(plan.base.cfg), "Seed": seed, "Size": f"{width}x{height}"})
    if model:
        fields["Model"] = os.path.splitext(os.path.basename(model))[0]
    fields.update(tb_fields(plan, seed))
    fields.update(tinybreaker_fields(plan))
    prompt = resolve_random_seed(plan.prompt, seed)
    negative = plan.negative.strip()
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    last_line = ", ".join(f"{key}: {quote_infotext_value(value)}" for key, value in fields.items())
    return f"{prompt}{negative_line}\n{last_line}".strip()


def _window(stage: StageParams) -> StageParams:
    """The refine window as it ran: the detail level (step factor) folded into steps, start and end."""
    steps, start, end = step_window(stage.steps, stage.steps_start, stage.steps_end, stage.steps_nfactor)
    return stage.copy(steps=steps, steps_start=start, steps_end=end, steps_nfactor=0)

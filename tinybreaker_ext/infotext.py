"""Infotext of a planned generation, the same from both front ends (docs/design.md "Infotext"), written and read the
way ComfyUI-TinyBreaker's Save Image does (docs/numerics.md "Infotext and sampler names")."""

from __future__ import annotations

import json
import os
import re

from . import params
from .plan import GenerationPlan
from .prompt.styles import STAGE_FIELD_TYPES
from .sampling.schedules import step_window
from .stage_params import StageParams

TB_STYLE = "TB style"
TB_BASE_PARAMETERS = "TB base parameters"
TB_REFINER_PARAMETERS = "TB refiner parameters"

# TB parameter name → StageParams field (the first seven are what the reference writes).
_TB_FIELDS: dict[str, str] = {
    "sampler_name": "sampler", "scheduler": "scheduler", "steps": "steps", "start_at_step": "steps_start",
    "end_at_step": "steps_end", "cfg": "cfg", "noise_seed": "noise_seed",
    "steps_nfactor": "steps_nfactor", "extra_noise": "extra_noise",
}

_RANDOM_SEED_ARG = re.compile(r"(?P<name>seed|s)(?P<gap>\s+)(?:random|-1)(?P<tail>\s*)", re.IGNORECASE)

# A1111-style labels, "<sampler> <scheduler>" from these two maps: docs/numerics.md "Infotext and sampler names".
# GPU and CFG++ variants read as their base sampler; samplers A1111 lacks keep a readable name.
A1111_SAMPLERS: dict[str, str] = {
    "euler": "Euler", "euler_cfg_pp": "Euler",
    "euler_ancestral": "Euler a", "euler_ancestral_cfg_pp": "Euler a",
    "heun": "Heun", "heunpp2": "Heun",
    "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_2s_ancestral_cfg_pp": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_cfg_pp": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "lcm": "LCM", "ddim": "DDIM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC",
    "ddpm": "DDPM", "ipndm": "iPNDM", "ipndm_v": "iPNDM_v", "deis": "DEIS",
    "res_multistep": "RES Multistep", "res_multistep_cfg_pp": "RES Multistep",
    "res_multistep_ancestral": "RES Multistep a", "res_multistep_ancestral_cfg_pp": "RES Multistep a",
    "gradient_estimation": "Gradient Estimation", "er_sde": "ER SDE", "seeds_2": "Seeds 2", "seeds_3": "Seeds 3",
}
A1111_SCHEDULERS: dict[str, str] = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "Uniform", "beta": "Beta", "kl_optimal": "KL Optimal",
    "linear_quadratic": "Linear Quadratic",
}
# Samplers whose A1111 legacy name omits the normal schedule ("Euler a", "DPM2": the reference misspells dpm_2's keys).
LEGACY_NORMAL = {"euler_ancestral", "euler", "lms", "heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                 "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "dpm_fast", "dpm_adaptive", "dpmpp_3m_sde", "ddim",
                 "uni_pc", "lcm"}


def format_number(value: float | int) -> str:
    """A clean decimal: 3.2 not 3.1999999999999997; floats keep one decimal (2.0), like Python's repr."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    cleaned = round(float(value), 6)
    return repr(cleaned + 0.0)  # + 0.0 turns -0.0 into 0.0


def a1111_sampler_name(sampler: str, scheduler: str) -> str:
    """A ComfyUI sampler/scheduler's A1111 label (an unknown scheduler is left out)."""
    sampler, scheduler = sampler.strip(), scheduler.strip()
    if scheduler == "normal" and sampler in LEGACY_NORMAL:
        return A1111_SAMPLERS[sampler]
    return f"{A1111_SAMPLERS.get(sampler, 'Euler')} {A1111_SCHEDULERS.get(scheduler, '')}".strip()


def format_stage_parameters(stage: StageParams) -> str:
    """`sampler_name:…, …, noise_seed:…` of the window as it runs: the detail level (step factor) folded into steps,
    start and end (docs/numerics.md "Step windows")."""
    steps, start, end = step_window(stage.steps, stage.steps_start, stage.steps_end, stage.steps_nfactor)
    return (f"sampler_name:{stage.sampler.strip()}, scheduler:{stage.scheduler.strip()}, steps:{steps}, "
            f"start_at_step:{start}, end_at_step:{end}, "
            f"cfg:{format_number(stage.cfg)}, noise_seed:{int(stage.noise_seed)}")


def quote_infotext_value(value: object) -> str:
    """JSON-quotes a value containing `,`, `:` or a newline, as A1111 and the reference do."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(mark in text for mark in ",:\n") else text


def resolve_random_seed(text: str, seed: int) -> str:
    """`text` with each `--seed random` / `--s random` (and `-1`) argument replaced by `seed`, all else kept."""
    prompt, *chunks = (text or "").split("--")
    for index, chunk in enumerate(chunks):
        match = _RANDOM_SEED_ARG.fullmatch(chunk)
        if match:
            chunks[index] = f"{match['name']}{match['gap']}{int(seed)}{match['tail']}"
    return "--".join([prompt, *chunks])


def parse_stage_parameters(text: str) -> tuple[dict[str, object], list[str]]:
    """`sampler_name:…, steps:…` → ({StageParams field: value}, warnings)."""
    values: dict[str, object] = {}
    warnings: list[str] = []
    for part in (text or "").split(","):
        name, separator, raw = part.partition(":")
        name, raw = name.strip(), raw.strip()
        if not separator or not name:
            continue
        field_name = _TB_FIELDS.get(name)
        if field_name is None:
            warnings.append(f"unknown TB parameter {name!r} (ignored)")
            continue
        try:
            values[field_name] = STAGE_FIELD_TYPES[field_name](raw)
        except ValueError:
            warnings.append(f"TB parameter {name}: cannot read {raw[:40]!r} (ignored)")
    return values, warnings


def tb_fields(plan: GenerationPlan, seed: int) -> dict[str, str]:
    """ComfyUI-TinyBreaker's fields for the image with base seed ``seed``; the refine seed is the same for all."""
    return {TB_STYLE: plan.params.style,
            TB_BASE_PARAMETERS: format_stage_parameters(plan.base.copy(noise_seed=int(seed))),
            TB_REFINER_PARAMETERS: format_stage_parameters(plan.refine)}


def format_infotext(plan: GenerationPlan, index: int = 0, *, model: str | None = None) -> str:
    """The command line's whole infotext for image ``index`` of the batch: the prompt as typed (``--seed random``
    replaced by the seed used), the negative prompt, the reference's standard fields, then ours."""
    seed = plan.seeds[index]
    width, height = plan.output_size
    fields: dict[str, object] = {"Steps": plan.base_steps + plan.refine_steps,
                                 "Sampler": a1111_sampler_name(plan.base.sampler, plan.base.scheduler),
                                 "CFG scale": format_number(plan.base.cfg), "Seed": seed, "Size": f"{width}x{height}"}
    if model:
        fields["Model"] = os.path.splitext(os.path.basename(model))[0]
    fields.update(tb_fields(plan, seed))
    fields.update(params.to_infotext(plan.recorded_params()))
    prompt = resolve_random_seed(plan.prompt, seed)
    negative = plan.negative.strip()
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    last_line = ", ".join(f"{key}: {quote_infotext_value(value)}" for key, value in fields.items())
    return f"{prompt}{negative_line}\n{last_line}".strip()

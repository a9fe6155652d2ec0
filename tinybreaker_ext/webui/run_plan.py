"""Everything one txt2img job needs, decided in process(): validated parameters, the style's numbers, the
model files. Any problem is kept in ``error`` and raised from p.sample, where the UI and API can see it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ModelNotFoundError, ParameterError, TinyBreakerError
from ..generation_plan import GenerationPlan, plan_generation
from ..params import TinyBreakerParams
from . import locations

PIXART_MULTIPLE = 16  # latent/8 must split into 2×2 patches


@dataclass
class RunPlan:
    params: TinyBreakerParams
    generation: GenerationPlan | None = None
    checkpoint_path: str | None = None
    t5_path: str | None = None
    base_width: int = 0
    base_height: int = 0
    error: Exception | None = None
    _engine: object = field(default=None, repr=False)

    # The numbers the first pass uses, straight from the generation plan.
    @property
    def base_stage(self):
        return self.generation.base_stage

    @property
    def base_step_count(self) -> int:
        return self.generation.base_step_count

    @property
    def refine_strength(self) -> float:
        return self.generation.refine_strength

    @property
    def refine_steps(self) -> int:
        return self.generation.refine_steps

    @property
    def refine_cfg(self) -> float:
        return self.generation.refine_cfg

    @property
    def upscale(self) -> bool:
        return self.params.upscale

    @property
    def upscale_by(self) -> float:
        return self.params.upscale_by

    @property
    def upscaler_stage(self):
        return self.generation.upscaler_stage

    @property
    def t5_mode(self) -> str:
        if self.params.t5_mode != "auto":
            return self.params.t5_mode
        return locations.option(locations.SETTING_T5_MODE, "auto")

    def base_prompt(self, text: str) -> str:
        return self.generation.base_prompt(text)

    def base_negative(self, text: str) -> str:
        return self.generation.base_negative(text)

    def load_engine(self, host):
        if self._engine is None:
            from ..pipeline import get_pipeline

            device = host.compute_device()
            dtype = host.compute_dtype(device, locations.option(locations.SETTING_DTYPE, "auto"))
            self._engine = get_pipeline(self.checkpoint_path, self.t5_path, device=device, dtype=dtype,
                                        tokenizer_search=_tokenizer_search())
        return self._engine


def build_run_plan(p, params: TinyBreakerParams, styles) -> RunPlan:
    plan = RunPlan(params=params)
    try:
        plan.generation = plan_generation(params, styles.get(params.style), params.style)
        plan.base_width = round_up(p.width, PIXART_MULTIPLE)
        plan.base_height = round_up(p.height, PIXART_MULTIPLE)
        plan.checkpoint_path = resolve_file("checkpoint", params.checkpoint, "checkpoint")
        plan.t5_path = resolve_file("t5", params.t5_file, "t5_file")
    except TinyBreakerError as error:
        plan.error = error
    return plan


def resolve_file(role: str, requested: str, field_name: str) -> str:
    """The requested file name (basename or path relative to a model folder), or the first candidate found."""
    from ..files.finder import ModelFinder

    dirs = locations.model_dirs()
    from ..files.classify import preferred_first

    candidates = [info.path for info in preferred_first(ModelFinder(dirs).candidates(role))]
    if requested:
        for path in candidates:
            if os.path.basename(path) == requested or any(
                    os.path.relpath(path, d) == requested for d in dirs if path.startswith(d)):
                return path
        if os.path.isabs(requested) and os.path.isfile(requested):
            return requested
        raise ParameterError(field_name, f"no {role} file named {requested!r} in {', '.join(dirs) or 'no folder'}; "
                                         f"found: {', '.join(os.path.basename(c) for c in candidates) or 'none'}")
    if not candidates:
        what = "a TinyBreaker checkpoint" if role == "checkpoint" else "a T5-XXL encoder file"
        raise ModelNotFoundError(what, dirs or [locations.tinybreaker_dir()],
                                 hint=f"put it in {locations.tinybreaker_dir()} (see the README for download links)")
    return candidates[0]


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def _tokenizer_search() -> dict:
    return {"models_dirs": locations.model_dirs(), "host_dirs": locations.host_tokenizer_dirs()}

"""Everything one txt2img job needs, decided in process(): the generation plan (``plan.make_plan``, the same as the
command line's) and the host state around it — the model files and the engine. Any problem is kept in ``error`` and
raised from p.sample, where the UI and API can see it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ModelNotFoundError, ParameterError, TinyBreakerError
from ..params import TinyBreakerParams
from ..plan import GenerationPlan, ImageRequest, make_plan
from . import locations


@dataclass
class RunPlan:
    params: TinyBreakerParams
    generation: GenerationPlan | None = None
    checkpoint_path: str | None = None
    t5_path: str | None = None
    error: Exception | None = None
    texts: list | None = None  # this batch's StageTexts, set in process_batch
    _engine: object = field(default=None, repr=False)

    @property
    def t5_mode(self) -> str:
        if self.params.t5_mode != "auto":
            return self.params.t5_mode
        return locations.option(locations.SETTING_T5_MODE, "auto")

    def load_engine(self, host):
        if self._engine is None:
            from ..pipeline import get_pipeline

            device = host.compute_device()
            dtype = host.compute_dtype(device, locations.option(locations.SETTING_DTYPE, "auto"))
            self._engine = get_pipeline(self.checkpoint_path, self.t5_path, device=device, dtype=dtype,
                                        tokenizer_search=_tokenizer_search())
        return self._engine


def image_request(p) -> ImageRequest:
    """The host's txt2img fields as the plan's request: the first image's prompt, seed and the batch."""
    prompts = getattr(p, "all_prompts", None) or [p.prompt]
    negatives = getattr(p, "all_negative_prompts", None) or [p.negative_prompt]
    seeds = getattr(p, "all_seeds", None) or [p.seed]
    return ImageRequest(prompt=prompts[0] or "", negative=negatives[0] or "", width=int(p.width),
                        height=int(p.height), seed=int(seeds[0]), batch_size=int(p.batch_size),
                        size_step=locations.size_step())


def build_run_plan(p, params: TinyBreakerParams, styles) -> RunPlan:
    plan = RunPlan(params=params)
    try:
        plan.generation = make_plan(params, image_request(p), styles)
        plan.params = plan.generation.params
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


def _tokenizer_search() -> dict:
    return {"models_dirs": locations.model_dirs(), "host_dirs": locations.host_tokenizer_dirs()}

"""Everything one txt2img job needs, decided in process() (docs/design.md "Data flow"): the plan, the model files,
the engine and the memory preflight. Any problem is kept in ``error`` (docs/hosts.md "The first pass")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ModelNotFoundError, ParameterError, TinyBreakerError
from ..limits import t5_token_counter
from ..memory_plan import MemoryPlan, plan_memory
from ..models.t5_encoder import MODES
from ..params import TinyBreakerParams
from ..plan import GenerationPlan, ImageRequest, make_plan
from ..prompt.file_defaults import checkpoint_file_defaults
from . import locations


@dataclass
class RunPlan:
    params: TinyBreakerParams
    generation: GenerationPlan | None = None
    checkpoint_path: str | None = None
    t5_path: str | None = None
    error: TinyBreakerError | None = None
    texts: list | None = None  # this batch's StageTexts, set in process_batch
    memory: MemoryPlan | None = None  # the preflight's estimate (check), set in process
    _engine: object = field(default=None, repr=False)

    def load_engine(self, host):
        if self._engine is None:
            from ..pipeline import get_pipeline

            device = host.compute_device()
            dtype = host.compute_dtype(device, locations.option(locations.SETTING_DTYPE, "auto"))
            self._engine = get_pipeline(self.checkpoint_path, self.t5_path, device=device, dtype=dtype,
                                        tokenizer_search=locations.tokenizer_search(),
                                        compile=bool(locations.option(locations.SETTING_COMPILE, False)))
        return self._engine


def requested_t5_mode(field_value: str | None) -> str:
    """The T5 placement asked for: the field, else (``auto`` or empty) the setting, which may be ``auto`` too."""
    if field_value and field_value != "auto":
        return field_value
    return locations.option(locations.SETTING_T5_MODE, "auto")


def image_request(p) -> ImageRequest:
    """The host's txt2img fields as the plan's request: the first image's prompt, seed and the batch."""
    prompts = getattr(p, "all_prompts", None) or [p.prompt]
    negatives = getattr(p, "all_negative_prompts", None) or [p.negative_prompt]
    seeds = getattr(p, "all_seeds", None) or [p.seed]
    return ImageRequest(prompt=prompts[0] or "", negative=negatives[0] or "", width=int(p.width),
                        height=int(p.height), seed=int(seeds[0]), batch_size=int(p.batch_size),
                        size_step=locations.size_step())


def build_run_plan(params: TinyBreakerParams, request: ImageRequest, styles, *,
                   files_required: bool = True) -> RunPlan:
    """The plan of a txt2img job, and of ``POST /plan`` (``files_required=False``: no T5 file is looked for, and
    without a checkpoint installed the plan is the styles' alone)."""
    from .upscale import find_upscaler

    plan = RunPlan(params=params)
    try:
        tokens = t5_token_counter(locations.tokenizer_search())
        plan.generation = make_plan(params, request, styles, t5_tokens=tokens)  # the fields checked first
        try:
            plan.checkpoint_path = resolve_file("checkpoint", params.checkpoint, "checkpoint")
        except ModelNotFoundError:
            if files_required:
                raise
        defaults = checkpoint_file_defaults(plan.checkpoint_path) if plan.checkpoint_path else None
        if defaults:
            plan.generation = make_plan(params, request, styles, t5_tokens=tokens, file_defaults=defaults)
        plan.params = plan.generation.params
        if files_required:
            plan.t5_path = resolve_file("t5", params.t5_file, "t5_file")
        if plan.generation.params.upscale and plan.generation.params.pre_upscaler:  # a 422 before any work
            find_upscaler(plan.generation.params.pre_upscaler)
    except TinyBreakerError as error:
        plan.error = error
    return plan


def resolve_file(role: str, requested: str, field_name: str) -> str:
    """The request's model file (empty: the first found), confined to the model folders (docs/hosts.md "File names")."""
    from ..files.finder import ROLE_NAMES, ModelFinder

    dirs = locations.model_dirs()
    finder = ModelFinder(dirs)
    candidates = [info.path for info in finder.candidates(role)]
    what = ROLE_NAMES[role]
    if not requested:
        if not candidates:
            raise ModelNotFoundError(what, dirs or [locations.tinybreaker_dir()], hint=f"put it in "
                                     f"{locations.tinybreaker_dir()} (see the README for download links)")
        return candidates[0]
    names = ", ".join(os.path.basename(path) for path in candidates) or "none"
    wanted = requested.replace("\\", "/")
    if "\0" in wanted or wanted.startswith("/") or ":" in wanted.split("/")[0] or ".." in wanted.split("/"):
        raise ParameterError(field_name, f"{requested!r} is not a file name inside the model folders; found: {names}")
    for path in candidates:
        if wanted in _forms(path, dirs):
            return path
    for path, reason in finder.skipped:  # in a model folder, but not usable for this role
        if wanted in _forms(path, dirs):
            raise ParameterError(field_name, f"{wanted!r} is not usable as {what}: {reason}; found: {names}")
    for path in (info.path for other in ("checkpoint", "t5") if other != role for info in finder.candidates(other)):
        if wanted in _forms(path, dirs):
            raise ParameterError(field_name, f"{wanted!r} is not {what}; found: {names}")
    raise ParameterError(field_name, f"no {role} file named {requested!r} in the model folders; found: {names}")


def _forms(path: str, dirs: list[str]) -> list[str]:
    """How a request may name a file: its name, or its path relative to a model folder."""
    return [os.path.basename(path)] + [os.path.relpath(path, folder).replace(os.sep, "/") for folder in dirs
                                       if os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)]


def free_for_tinybreaker(host, device, sd_model=None) -> tuple[int | None, int | None]:
    """The host's free RAM and device memory (``HostAdapter.free_memory``) plus what our own cached models hold (a
    job reuses or replaces them). A reading that fails is unknown (None: not checked), not a reason to refuse."""
    from ..pipeline import held_bytes

    try:
        free_ram, free_device = host.free_memory(device, sd_model)
    except Exception:  # noqa: BLE001 — a host's manager or driver failing to answer must not stop a job
        return None, None
    held_ram, held_device = held_bytes()
    return (None if free_ram is None else free_ram + held_ram,
            None if free_device is None else free_device + held_device)


def plan_for(host, checkpoint_path: str, t5_path: str, t5_mode: str, sd_model=None) -> MemoryPlan:
    device = host.compute_device()
    dtype = host.compute_dtype(device, locations.option(locations.SETTING_DTYPE, "auto"))
    free_ram, free_device = free_for_tinybreaker(host, device, sd_model)
    return plan_memory(t5_path, checkpoint_path, device=device, model_dtype=dtype, t5_mode=t5_mode,
                       placement_policy=getattr(host.placement(), "policy", "offload"), free_ram=free_ram,
                       free_device=free_device)


def check(plan, host, sd_model=None) -> None:
    """``plan.memory`` gets the estimate (its ``t5_mode`` is what runs), or ``plan.error`` a 422 naming the field to
    change and what would fit."""
    try:
        plan.memory = plan_for(host, plan.checkpoint_path, plan.t5_path, requested_t5_mode(plan.params.t5_mode),
                               sd_model)
    except TinyBreakerError as error:
        plan.error = error
        return
    if not plan.memory.fits:
        plan.error = ParameterError(plan.memory.field, plan.memory.message)


def hint(checkpoint: str, t5_file: str, t5_mode: str) -> str:
    from .host import get_host

    try:
        plan = plan_for(get_host(), resolve_file("checkpoint", checkpoint or "", "checkpoint"),
                        resolve_file("t5", t5_file or "", "t5_file"),
                        requested_t5_mode(t5_mode))
    except TinyBreakerError as error:
        return f"memory: {error}"
    return f"memory: {plan.message}"


def estimates(host, checkpoint_path: str, t5_path: str) -> dict:
    """The preflight's answer per T5 placement, as ``GET /tinybreaker/v1/models`` lists it (README "API")."""
    result = {}
    for mode in MODES:
        plan = plan_for(host, checkpoint_path, t5_path, mode)
        result[mode] = {"t5_mode": plan.t5_mode, "ram_bytes": plan.ram_peak, "device_bytes": plan.device_peak,
                        "fits": plan.fits, "message": plan.message}
    return result

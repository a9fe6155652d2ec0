"""Will it fit, in the WebUI (docs/design.md "Data flow"): the command line's estimate from file headers with the free
memory the host reports, before a job loads anything, for the accordion's hint and for ``GET /models``."""

from __future__ import annotations

from ..memory_plan import MemoryPlan, plan_memory
from ..models.t5_encoder import MODES
from . import locations


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
    from ..errors import ParameterError, TinyBreakerError

    try:
        plan.memory = plan_for(host, plan.checkpoint_path, plan.t5_path, plan.requested_t5_mode, sd_model)
    except TinyBreakerError as error:
        plan.error = error
        return
    if not plan.memory.fits:
        plan.error = ParameterError(plan.memory.field, plan.memory.message)


def hint(checkpoint: str, t5_file: str, t5_mode: str) -> str:
    from ..errors import TinyBreakerError
    from .host import get_host
    from .run_plan import requested_t5_mode, resolve_file

    try:
        plan = plan_for(get_host(), resolve_file("checkpoint", checkpoint or "", "checkpoint"),
                        resolve_file("t5", t5_file or "", "t5_file"),
                        requested_t5_mode(t5_mode))
    except TinyBreakerError as error:
        return f"memory: {error}"
    return f"memory: {plan.message}"


def estimates(host, checkpoint_path: str, t5_path: str) -> dict:
    """Per T5 placement: what runs, the peak RAM and device bytes, whether it fits now, and the command line's
    one-line message (README "API")."""
    result = {}
    for mode in MODES:
        plan = plan_for(host, checkpoint_path, t5_path, mode)
        result[mode] = {"t5_mode": plan.t5_mode, "ram_bytes": plan.ram_peak, "device_bytes": plan.device_peak,
                        "fits": plan.fits, "message": plan.message}
    return result

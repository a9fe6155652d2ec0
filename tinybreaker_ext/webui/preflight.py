"""Will it fit, in the WebUI: the command line's estimate (``memory_plan.plan_memory``, one function for both front
ends) with the free RAM and device memory the host reports (``HostAdapter.free_memory``: the Forge family's memory
manager, CUDA's reading on A1111). Used before a job loads anything (``check``: ``auto`` is resolved here and a job
that cannot fit is refused, naming the field to change), for the accordion's one-line hint and for the estimates of
``GET /tinybreaker/v1/models``. Only file headers are read, cached per file version (memory_plan)."""

from __future__ import annotations

from ..memory_plan import MemoryPlan, plan_memory
from ..models.t5_encoder import MODES
from . import locations


def free_for_tinybreaker(host, device, sd_model=None) -> tuple[int | None, int | None]:
    """The host's free RAM and device memory (with what it gives up for our stage: ``sd_model`` is the job's
    checkpoint), plus what our own cached models hold (a job reuses or replaces them). A reading that fails is
    unknown (None: not checked) rather than a reason to refuse a job."""
    from ..pipeline import held_bytes

    try:
        free_ram, free_device = host.free_memory(device, sd_model)
    except Exception:  # noqa: BLE001 — a host's manager or driver failing to answer must not stop a job
        return None, None
    held_ram, held_device = held_bytes()
    return (None if free_ram is None else free_ram + held_ram,
            None if free_device is None else free_device + held_device)


def plan_for(host, checkpoint_path: str, t5_path: str, t5_mode: str, sd_model=None) -> MemoryPlan:
    """The estimate on this host's device, dtype and placement, against its free memory now."""
    device = host.compute_device()
    dtype = host.compute_dtype(device, locations.option(locations.SETTING_DTYPE, "auto"))
    free_ram, free_device = free_for_tinybreaker(host, device, sd_model)
    return plan_memory(t5_path, checkpoint_path, device=device, model_dtype=dtype, t5_mode=t5_mode,
                       placement_policy=getattr(host.placement(), "policy", "offload"), free_ram=free_ram,
                       free_device=free_device)


def check(plan, host, sd_model=None) -> None:
    """Before the job loads anything: ``plan.memory`` gets the estimate (its ``t5_mode`` is what runs), or
    ``plan.error`` a 422 naming the field to change and what would fit."""
    from ..errors import ParameterError, TinyBreakerError

    try:
        plan.memory = plan_for(host, plan.checkpoint_path, plan.t5_path, plan.requested_t5_mode, sd_model)
    except TinyBreakerError as error:
        plan.error = error
        return
    if not plan.memory.fits:
        plan.error = ParameterError(plan.memory.field, plan.memory.message)


def hint(checkpoint: str, t5_file: str, t5_mode: str) -> str:
    """The accordion's line next to T5 placement: the estimate for these choices, or why there is none."""
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
    """Per T5 placement (``auto``, ``gpu``, ``cpu``, ``stream``): ``t5_mode`` (what ``auto`` resolves to),
    ``ram_bytes`` and ``device_bytes`` at the peak stage (integers; device 0 on a CPU), ``fits`` (against the free
    memory now) and the one-line ``message`` (the command line's wording)."""
    result = {}
    for mode in MODES:
        plan = plan_for(host, checkpoint_path, t5_path, mode)
        result[mode] = {"t5_mode": plan.t5_mode, "ram_bytes": plan.ram_peak, "device_bytes": plan.device_peak,
                        "fits": plan.fits, "message": plan.message}
    return result

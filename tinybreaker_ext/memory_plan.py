"""Will it fit? Each stage's RAM and device bytes from file headers only, and the T5 placement ``auto`` picks, for the
command line and the WebUI alike (docs/design.md "Data flow", step 3). T5 is counted as stored (the minimum): weights
kept converted between encodes (``t5_policy.conversion_budget``) only use memory beyond the reserve that policy leaves
free for the other stages."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch

from .errors import NotEnoughMemoryError, ParameterError
from .files.classify import BASE_PREFIX, TRANSCODER_PREFIX, FileKind, ModelFileInfo, classify, header_of
from .models.t5_encoder import ACTIVATION_RESERVE_BYTES, MODES
from .models.t5_policy import available_ram_bytes, resolve_compute_dtype

GB = 1e9
# city96/t5-v1_1-xxl-encoder-gguf file sizes (bytes): what to suggest when the T5 does not fit. Below Q5_K_M the
# quantizer's model card warns of quality loss.
SMALLER_T5_FILES = (("Q8_0", 5.06e9), ("Q6_K", 3.91e9), ("Q5_K_M", 3.39e9), ("Q4_K_M", 2.90e9), ("Q3_K_L", 2.46e9))
RECOMMENDED_MINIMUM = "Q5_K_M"


@dataclass(frozen=True)
class StageMemory:
    stage: str  # "encode", "base", "transcode"
    ram_bytes: int  # RAM TinyBreaker holds while the stage runs (models kept between stages included)
    device_bytes: int  # memory on the compute device (0 when the device is the CPU: then everything is RAM)


@dataclass(frozen=True)
class T5Footprint:
    """From the T5 file's header: bytes as stored, the largest weight (upcast one at a time while its module runs)
    and the largest sub-layer (a block half: what ``stream`` moves to the device at once) as stored."""
    stored_bytes: int
    largest_weight_numel: int
    largest_sublayer_stored_bytes: int


@dataclass(frozen=True)
class MemoryPlan:
    t5_mode: str  # the mode to run ("auto" resolved)
    stages: tuple[StageMemory, ...]
    fits: bool
    message: str  # one line: the estimate and the choice, or what does not fit and what would
    field: str | None = None  # when it does not fit: the request field to change ("t5_file" or "t5_mode")

    @property
    def ram_peak(self) -> int:
        return max(stage.ram_bytes for stage in self.stages)

    @property
    def device_peak(self) -> int:
        return max(stage.device_bytes for stage in self.stages)

    def check(self) -> "MemoryPlan":
        if not self.fits:
            raise NotEnoughMemoryError(self.message)
        return self


def free_device_bytes(device: torch.device) -> int | None:
    """The free memory of a CUDA ``device`` in bytes; None for other devices (not measured)."""
    return int(torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else None


def _file_version(path: str | os.PathLike) -> tuple[str, int, int]:
    """What the header caches are keyed by: a file replaced or rewritten in place is read again."""
    path = os.path.abspath(os.fspath(path))
    status = os.stat(path)
    return path, status.st_size, status.st_mtime_ns


def t5_footprint(path: str | os.PathLike) -> T5Footprint:
    """The T5 encoder's footprint in ``path`` (safetensors or GGUF), from the header (cached per file version)."""
    return _t5_footprint(*_file_version(path))


@functools.lru_cache(maxsize=16)
def _t5_footprint(path: str, size: int, mtime_ns: int) -> T5Footprint:
    info = _classify(path, size, mtime_ns)
    header = header_of(path)
    prefix = info.key_prefix
    if info.file_format == "gguf":
        from .files.gguf_file import hf_t5_names

        named = {key: header.tensors[name] for key, name in hf_t5_names(header.tensors).items()}
    else:
        named = {key[len(prefix):]: entry for key, entry in header.tensors.items() if key.startswith(prefix)}
    encoder = {key: entry for key, entry in named.items() if key.startswith("encoder.") or key == "shared.weight"}
    sublayers: dict[str, list] = {}
    for key, entry in encoder.items():
        parts = key.split(".")
        if parts[1] == "block":
            sublayers.setdefault(".".join(parts[:5]), []).append(entry)
    return T5Footprint(stored_bytes=sum(entry.nbytes for entry in encoder.values()),
                       largest_weight_numel=max(math.prod(entry.shape) for entries in sublayers.values()
                                                for entry in entries),
                       largest_sublayer_stored_bytes=max(sum(entry.nbytes for entry in entries)
                                                         for entries in sublayers.values()))


@functools.lru_cache(maxsize=16)
def _weights_numel(path: str, _size: int, _mtime_ns: int, prefix: str) -> int:
    return sum(math.prod(entry.shape) for key, entry in header_of(path).tensors.items() if key.startswith(prefix))


@functools.lru_cache(maxsize=32)
def _classify(path: str, _size: int, _mtime_ns: int) -> ModelFileInfo:
    return classify(path)


def _stages(device: torch.device, mode: str, t5: T5Footprint, compute_size: int, pixart: int, transcoder: int,
            policy: str) -> tuple[StageMemory, ...]:
    act = ACTIVATION_RESERVE_BYTES
    upcast = t5.largest_weight_numel * compute_size
    if device.type == "cpu":
        held = t5.stored_bytes + pixart + transcoder + act
        return StageMemory("encode", held + upcast, 0), StageMemory("base", held, 0), StageMemory("transcode", held, 0)
    if mode == "gpu":  # weights stay on the device after the encode
        t5_ram, t5_running, t5_resident = 0, t5.stored_bytes + upcast, t5.stored_bytes
    else:  # stream (or cpu storage on an accelerator): the running sub-layer and the next one travel as stored
        t5_ram, t5_running, t5_resident = t5.stored_bytes, upcast + 2 * t5.largest_sublayer_stored_bytes, 0
    if policy == "gpu":  # the placement keeps every model on the device once it has run (steady state)
        models = pixart + transcoder
        return (StageMemory("encode", t5_ram, t5_running + models + act),
                StageMemory("base", t5_ram, t5_resident + models + act),
                StageMemory("transcode", t5_ram, t5_resident + models + act))
    # offload: each model is on the device only during its own stage and back in RAM otherwise
    return (StageMemory("encode", t5_ram + pixart + transcoder, t5_running + act),
            StageMemory("base", t5_ram + transcoder, t5_resident + pixart + act),
            StageMemory("transcode", t5_ram + pixart, t5_resident + transcoder + act))


def _fits(stages, free_ram: int | None, free_device: int | None) -> tuple[bool, bool]:
    ram_ok = free_ram is None or max(s.ram_bytes for s in stages) <= free_ram
    device_ok = free_device is None or max(s.device_bytes for s in stages) <= free_device
    return ram_ok, device_ok


def _smaller_t5(room: int, stored: int) -> str:
    """'use a Q5_K_M T5 (3.4 GB)' for the largest known T5 file that fits ``room`` bytes and is smaller than ours."""
    minimum = [name for name, _ in SMALLER_T5_FILES].index(RECOMMENDED_MINIMUM)
    for index, (name, size) in enumerate(SMALLER_T5_FILES):
        if size <= room and size < stored:
            warning = f"; below {RECOMMENDED_MINIMUM} quality drops" if index > minimum else ""
            return f"use a {name} T5 GGUF ({size / GB:.1f} GB{warning})"
    return ""


def plan_memory(t5_path: str | os.PathLike, checkpoint_path: str | os.PathLike, *, device: torch.device | str,
                model_dtype: torch.dtype, t5_mode: str = "auto", t5_dtype: torch.dtype | None = None,
                placement_policy: str = "offload",
                free_ram: int | None = None, free_device: int | None = None) -> MemoryPlan:
    """Resolves ``t5_mode="auto"`` and says whether the stages fit ``free_ram``/``free_device`` (None: read them now;
    a device without a reading is not checked). ``placement_policy``: "offload" (each model leaves the device after
    its stage, as in the WebUI) or "gpu" (everything stays); ``auto`` keeps T5 resident only beside "gpu", the
    pipeline's own rule (``TinyBreakerPipeline.t5``)."""
    if t5_mode not in MODES:
        raise ParameterError("t5_mode", f"'{t5_mode}' is not one of {', '.join(MODES)}")
    device = torch.device(device)
    compute_dtype = resolve_compute_dtype(t5_dtype, device)
    compute_size = torch.tensor([], dtype=compute_dtype).element_size()
    model_size = torch.tensor([], dtype=model_dtype).element_size()
    t5_info, checkpoint_info = _classify(*_file_version(t5_path)), _classify(*_file_version(checkpoint_path))
    if t5_info.kind is not FileKind.T5_ENCODER:
        raise ParameterError("t5_file", f"{t5_path} is a {t5_info.description}, not a T5 encoder")
    t5 = t5_footprint(t5_path)
    if not checkpoint_info.is_tinybreaker:
        raise ParameterError("checkpoint", f"{checkpoint_path} is a {checkpoint_info.description}, not a TinyBreaker "
                                           "checkpoint")
    pixart = _weights_numel(*_file_version(checkpoint_path), BASE_PREFIX) * model_size
    transcoder = _weights_numel(*_file_version(checkpoint_path), TRANSCODER_PREFIX) * model_size
    if free_ram is None:
        free_ram = available_ram_bytes()
    if free_device is None:
        free_device = free_device_bytes(device)

    if t5_mode != "auto":
        candidates = [t5_mode]
    elif device.type == "cpu":
        candidates = ["cpu"]
    else:
        candidates = ["gpu", "stream"] if placement_policy == "gpu" else ["stream"]
    for mode in candidates:  # the first that fits, else the last
        stages = _stages(device, mode, t5, compute_size, pixart, transcoder, placement_policy)
        ram_ok, device_ok = _fits(stages, free_ram, free_device)
        if ram_ok and device_ok:
            break
    ram_peak, device_peak = max(s.ram_bytes for s in stages), max(s.device_bytes for s in stages)
    where = f"RAM {ram_peak / GB:.1f} GB" + (f", {device.type.upper()} {device_peak / GB:.1f} GB"
                                           if device.type != "cpu" else "")
    free = (f"free RAM {free_ram / GB:.1f} GB" if free_ram is not None else "free RAM unknown") + \
        (f", free {device.type.upper()} {free_device / GB:.1f} GB" if free_device is not None else "")
    if ram_ok and device_ok:
        message = f"T5 {mode} ({str(compute_dtype)[6:]}): needs {where}; {free}"
        return MemoryPlan(mode, stages, True, message)

    advice = []
    if not device_ok and t5_mode == "gpu" and device.type != "cpu":
        stream = _stages(device, "stream", t5, compute_size, pixart, transcoder, placement_policy)
        if all(_fits(stream, free_ram, free_device)):
            advice.append("use stream")
    if not ram_ok and free_ram is not None:
        room = free_ram - (ram_peak - t5.stored_bytes)
        smaller = _smaller_t5(room, t5.stored_bytes)
        advice.append(smaller or f"free {(ram_peak - free_ram) / GB:.1f} GB of RAM")
    if not device_ok and not advice:
        advice.append(f"free {(device_peak - free_device) / GB:.1f} GB of {device.type.upper()} memory")
    message = f"not enough memory for T5 {mode}: needs {where}, {free}; " + " or ".join(advice)
    field = "t5_mode" if ram_ok else "t5_file"  # a placement helps the device; only a smaller file helps RAM
    return MemoryPlan(mode, stages, False, message, field)

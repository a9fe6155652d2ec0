"""Which WebUI we run in, decided once by capability (docs/hosts.md "Host detection"), and A1111's adapter."""

from __future__ import annotations

import contextlib
import importlib

import torch

from ..placement import MovePlacement

_adapter: HostAdapter | None = None

# (memory manager module, module holding ModelPatcher), newest family first.
MANAGERS = (("backend.memory_management", "backend.patcher.base"),
            ("ldm_patched.modules.model_management", "ldm_patched.modules.model_patcher"))
MANAGER_FUNCTIONS = ("load_models_gpu", "free_memory", "get_torch_device")
# Room PixArt-Sigma (fp16) plus activations at 1536×1024 needs next to a resident SD1 model.
_BASE_STAGE_BYTES = int(2.5 * 1024**3)


class HostAdapter:
    """What every host adapter shares; each adds ``compute_device()`` and ``placement()`` (a placement backed by the
    host's memory handling) and a ``name``. The rest of the WebUI layer only talks to this."""

    def compute_dtype(self, device: torch.device, preference: str = "auto") -> torch.dtype:
        """PixArt/TAESD dtype: the user's setting, else bf16 where the GPU has it, fp16 on other GPUs, fp32 on CPU."""
        if preference == "fp32" or device.type == "cpu":
            return torch.float32
        if preference == "fp16":
            return torch.float16
        if preference == "bf16":
            return torch.bfloat16
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def free_memory(self, device: torch.device, sd_model=None) -> tuple[int | None, int | None]:
        """(free RAM, free ``device`` memory) for TinyBreaker in bytes, None where unknown or on a CPU; adapters add
        what the host gives up for our stage (``sd_model``: the job's checkpoint; docs/hosts.md "Memory managers")."""
        from ..memory_plan import free_device_bytes
        from ..models.t5_policy import available_ram_bytes

        return available_ram_bytes(), free_device_bytes(device)

    def before_tinybreaker(self, sd_model) -> None:
        """Make room on the device for our stage (the host model may have to leave)."""

    def after_tinybreaker(self, sd_model) -> None:
        """Give the device back so the host's refine pass finds its model where it expects it."""

    def before_host_sampling(self, p) -> None:
        """Host bookkeeping the txt2img ``sample()`` does right before its sampler (Forge/reForge LoRA objects)."""

    def first_pass_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        """The decoded first pass [B, 3, H, W] in [-1, 1], in the form the host's ``sample_hr_pass`` takes."""
        return decoded

    def no_autocast(self):
        return contextlib.nullcontext()

    def latent_channels(self, sd_model) -> int:
        return int(getattr(sd_model, "latent_channels", 4))

    def refiner_family(self, sd_model) -> str | None:
        """"sd1" or "sdxl" when the loaded checkpoint can refine our base (4 latent channels, the host's flags)."""
        if self.latent_channels(sd_model) != 4:
            return None
        for flag, family in (("is_sdxl", "sdxl"), ("is_sd1", "sd1")):
            if getattr(sd_model, flag, False) is True:
                return family
        return None

    def describe_model(self, sd_model) -> str:
        for flag, label in (("is_sdxl", "SDXL"), ("is_sd3", "SD3"), ("is_sd2", "SD2"), ("is_flux", "Flux")):
            if getattr(sd_model, flag, False):
                return label
        if sd_model is None or type(sd_model).__name__ == "FakeInitialModel":
            return "no model"
        return type(sd_model).__name__


class A1111Host(HostAdapter):
    """AUTOMATIC1111 1.10: no memory manager (docs/hosts.md "Memory managers")."""

    name = "a1111"
    _moved_out = False  # set by before_tinybreaker: after_tinybreaker moves the checkpoint back

    def compute_device(self) -> torch.device:
        from modules import devices

        return torch.device(devices.get_device_for("tinybreaker"))

    def placement(self):
        # offload: each of our modules goes back to RAM after its stage, as A1111 does for interrogate models.
        return MovePlacement(self.compute_device(), policy="offload")

    def before_tinybreaker(self, sd_model) -> None:
        from modules import devices, sd_models

        self._moved_out = False
        device = self.compute_device()
        if sd_model is None or device.type != "cuda":
            return
        if _moves_model_out(sd_model, torch.cuda.mem_get_info(device)[0]):
            sd_models.send_model_to_cpu(sd_model)
            self._moved_out = True
        devices.torch_gc()

    def free_memory(self, device: torch.device, sd_model=None) -> tuple[int | None, int | None]:
        """CUDA's free bytes, plus the checkpoint's device bytes when ``before_tinybreaker`` will move it out."""
        free_ram, free_device = super().free_memory(device)
        if free_device is not None and sd_model is not None and _moves_model_out(sd_model, free_device):
            free_device += device_bytes([sd_model], device)
        return free_ram, free_device

    def after_tinybreaker(self, sd_model) -> None:
        from modules import devices, sd_models

        devices.torch_gc()
        if self._moved_out:
            sd_models.send_model_to_device(sd_model)
            self._moved_out = False

    def no_autocast(self):
        # p.sample runs inside devices.autocast(); T5 must not be autocast to fp16.
        from modules import devices

        return devices.without_autocast()


def device_bytes(modules, device: torch.device) -> int:
    """Bytes of the modules' parameters and buffers on ``device``, each tensor once (patcher clones share their
    module's tensors)."""
    tensors = {id(t): t for module in modules for t in [*module.parameters(), *module.buffers()]
               if t.device.type == device.type and device.index in (None, t.device.index)}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _moves_model_out(sd_model, free_bytes: int) -> bool:
    """--lowvram/--medvram models always leave; others when the room next to them is short."""
    return bool(getattr(sd_model, "lowvram", False)) or free_bytes < _BASE_STAGE_BYTES


def get_host() -> HostAdapter:
    global _adapter
    if _adapter is None:
        _adapter = detect_host()
    return _adapter


def detect_host() -> HostAdapter:
    for manager_name, patcher_module_name in MANAGERS:
        manager, patcher_module = _import(manager_name), _import(patcher_module_name)
        patcher_class = getattr(patcher_module, "ModelPatcher", None)
        if manager is not None and patcher_class is not None and all(
                callable(getattr(manager, name, None)) for name in MANAGER_FUNCTIONS):
            from .host_managed import ManagedHost

            return ManagedHost(host_family(manager_name), manager, patcher_class)
    return A1111Host()


def host_family(manager_name: str) -> str:
    """forge, neo, classic or reforge, from ``modules_forge.forge_version`` ("neo…", "classic", "2.x", "1.0.0v2")."""
    version = str(getattr(_import("modules_forge.forge_version"), "version", "") or "").lower()
    for family in ("neo", "classic"):
        if version.startswith(family):
            return family
    return "forge" if manager_name.startswith("backend") else "reforge"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not this host (ImportError), or a host module that fails to import outside its host
        return None

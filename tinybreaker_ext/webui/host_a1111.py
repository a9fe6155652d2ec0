"""AUTOMATIC1111 1.10: no central memory manager. The SD model leaves the GPU through the host's own helpers
(which honour --lowvram/--medvram) and comes back after our stage; our modules move by hand."""

from __future__ import annotations

import torch

from ..placement import MovePlacement, module_bytes
from .host_base import HostAdapter

# Room PixArt-Sigma (fp16) plus activations at 1536×1024 needs next to a resident SD1 model.
_BASE_STAGE_BYTES = int(2.5 * 1024**3)


class A1111Host(HostAdapter):
    name = "a1111"

    def __init__(self):
        self._moved_out = False

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
        if _moves_model_out(sd_model, _free_cuda_bytes(device)):
            sd_models.send_model_to_cpu(sd_model)
            self._moved_out = True
        devices.torch_gc()

    def free_memory(self, device: torch.device, sd_model=None) -> tuple[int | None, int | None]:
        """CUDA's free bytes, plus the checkpoint's device bytes when ``before_tinybreaker`` will move it out."""
        free_ram, free_device = super().free_memory(device)
        if free_device is not None and sd_model is not None and _moves_model_out(sd_model, free_device):
            free_device += sum(t.numel() * t.element_size() for t in list(sd_model.parameters()) +
                               list(sd_model.buffers()) if t.device.type == device.type)
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


def _moves_model_out(sd_model, free_bytes: int) -> bool:
    """--lowvram/--medvram models always leave; others when the room next to them is short."""
    return bool(getattr(sd_model, "lowvram", False)) or free_bytes < _BASE_STAGE_BYTES


def _free_cuda_bytes(device: torch.device) -> int:
    free, _total = torch.cuda.mem_get_info(device)
    return free


__all__ = ["A1111Host", "module_bytes"]

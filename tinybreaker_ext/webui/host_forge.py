"""Forge (2.x, ``backend`` package): our modules are wrapped in the host's ModelPatcher and loaded through its
``load_models_gpu``, so the host evicts and later reloads its own UNet. We keep strong references to the
patchers: Forge drops models only the manager refers to."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..placement import module_bytes
from .host_base import HostAdapter

_ACTIVATION_BYTES = 1024**3


class ForgePlacement:
    def __init__(self, memory_management, patcher_class, device: torch.device, patchers: dict):
        self._mm = memory_management
        self._patcher_class = patcher_class
        self.device = device
        self._patchers = patchers

    @contextlib.contextmanager
    def use(self, module: nn.Module) -> Iterator[nn.Module]:
        patcher = self._patchers.get(id(module))
        if patcher is None or patcher.model is not module:
            patcher = self._patcher_class(module, load_device=self.device, offload_device=torch.device("cpu"))
            self._patchers[id(module)] = patcher
        self._mm.load_models_gpu([patcher], memory_required=_ACTIVATION_BYTES)
        _finish_move(module, self.device)
        yield module
        # Left loaded on purpose: the host's next load_models_gpu (its UNet) evicts it if room is needed.

    def make_room(self, bytes_needed: int) -> None:
        if self.device.type != "cpu":
            self._mm.free_memory(bytes_needed + _ACTIVATION_BYTES, self.device)


class ForgeHost(HostAdapter):
    name = "forge"

    def __init__(self):
        self._patchers: dict[int, object] = {}

    def compute_device(self) -> torch.device:
        from backend import memory_management

        return torch.device(memory_management.get_torch_device())

    def placement(self):
        from backend import memory_management
        from backend.patcher.base import ModelPatcher

        return ForgePlacement(memory_management, ModelPatcher, self.compute_device(), self._patchers)

    def before_host_sampling(self, p) -> None:
        # Forge's own txt2img sample() resets the LoRA-applied objects right before sampling; so do we.
        model = p.sd_model
        if getattr(model, "forge_objects_after_applying_lora", None) is not None:
            model.forge_objects = model.forge_objects_after_applying_lora.shallow_copy()

    def latent_channels(self, sd_model) -> int:
        vae = getattr(getattr(sd_model, "forge_objects", None), "vae", None)
        return int(getattr(vae, "latent_channels", 4))


def _finish_move(module: nn.Module, device: torch.device) -> None:
    """The host's low-VRAM swap path moves only layers with a weight; bare parameters (PixArt's per-block
    scale_shift_table) would stay behind and cause a device mismatch, so move whatever is left."""
    if device.type == "cpu":
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device != device:
            module.to(device)
            return


__all__ = ["ForgeHost", "ForgePlacement", "module_bytes"]

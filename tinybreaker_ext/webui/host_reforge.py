"""reForge (``ldm_patched`` backend): like Forge, through its ComfyUI-era ModelPatcher and ``load_models_gpu``,
with ``force_full_load`` because plain modules can't be split across devices there, and strong references because
its manager only keeps weak ones."""

from __future__ import annotations

import torch
from torch import nn

from .host_base import HostAdapter
from .host_forge import ForgePlacement, reset_forge_objects


class _PatcherContainer(nn.Module):
    """reForge's ModelPatcher writes ``device``, ``model_lowvram`` … onto the module it manages; our modules have a
    read-only ``device`` property, so the patcher gets this plain container instead."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module


class ReForgePlacement(ForgePlacement):
    load_options = {"force_full_load": True}

    def wrap(self, module: nn.Module) -> nn.Module:
        return _PatcherContainer(module)

    def unwrap(self, managed: nn.Module) -> nn.Module:
        return managed.inner


class ReForgeHost(HostAdapter):
    name = "reforge"

    def __init__(self):
        self._patchers: dict[int, object] = {}

    def compute_device(self) -> torch.device:
        from ldm_patched.modules import model_management

        return torch.device(model_management.get_torch_device())

    def placement(self):
        from ldm_patched.modules import model_management
        from ldm_patched.modules.model_patcher import ModelPatcher

        return ReForgePlacement(model_management, ModelPatcher, self.compute_device(), self._patchers)

    def before_host_sampling(self, p) -> None:
        reset_forge_objects(p)

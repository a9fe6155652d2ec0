"""reForge (``ldm_patched`` backend): like Forge, through its ComfyUI-era ModelPatcher and ``load_models_gpu``,
with ``force_full_load`` because plain modules can't be split across devices there, and strong references because
its manager only keeps weak ones."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .host_base import HostAdapter
from .host_forge import _ACTIVATION_BYTES, _finish_move, reset_forge_objects, reuse_or_make_patcher


class _PatcherContainer(nn.Module):
    """reForge's ModelPatcher writes ``device``, ``model_lowvram`` … onto the module it manages; our modules have a
    read-only ``device`` property, so the patcher gets this plain container instead."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module


class ReForgePlacement:
    def __init__(self, model_management, patcher_class, device: torch.device, patchers: dict):
        self._mm = model_management
        self._patcher_class = patcher_class
        self.device = device
        self._patchers = patchers
        self._used: set[int] = set()  # ids of the modules this run (one placement per first pass) used

    @contextlib.contextmanager
    def use(self, module: nn.Module) -> Iterator[nn.Module]:
        patcher = reuse_or_make_patcher(
            self._patchers, self._used, module,
            lambda m: self._patcher_class(_PatcherContainer(m), load_device=self.device,
                                          offload_device=torch.device("cpu")),
            lambda existing: existing.model.inner)
        self._mm.load_models_gpu([patcher], memory_required=_ACTIVATION_BYTES, force_full_load=True)
        _finish_move(module, self.device)
        yield module

    def make_room(self, bytes_needed: int) -> None:
        if self.device.type != "cpu":
            self._mm.free_memory(bytes_needed + _ACTIVATION_BYTES, self.device)


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

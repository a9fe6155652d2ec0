"""Forge, Neo, Classic and reForge: our modules load through the host's manager (docs/hosts.md "Memory managers")."""

from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import torch
from torch import nn

from .host import HostAdapter, device_bytes

_ACTIVATION_BYTES = 1024**3
_PATCHER_ATTRIBUTE = "_tinybreaker_host_patcher"


class _PatcherContainer(nn.Module):
    """What the host's ModelPatcher manages: our module inside a container whose attributes it may write."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module


class ManagedPlacement:
    """Loads a module through the host's ``load_models_gpu`` before a stage; leaves it loaded after (the host's next
    load, its UNet's, evicts it if the room is needed)."""

    def __init__(self, memory_management, patcher_class, device: torch.device):
        self._mm = memory_management
        self._patcher_class = patcher_class
        self.device = device
        parameters = inspect.signature(memory_management.load_models_gpu).parameters
        self._load_options = {"force_full_load": True} if "force_full_load" in parameters else {}

    @contextlib.contextmanager
    def use(self, module: nn.Module) -> Iterator[nn.Module]:
        patcher = module.__dict__.get(_PATCHER_ATTRIBUTE)
        if patcher is None or patcher.load_device != self.device:
            patcher = self._patcher_class(_PatcherContainer(module), load_device=self.device,
                                          offload_device=torch.device("cpu"))
            module.__dict__[_PATCHER_ATTRIBUTE] = patcher  # a plain attribute: not a submodule, not a parameter
        self._mm.load_models_gpu([patcher], memory_required=_ACTIVATION_BYTES, **self._load_options)
        # A manager's partial or low-VRAM load moves only what it manages layer by layer; bare parameters (PixArt's
        # per-block scale_shift_table) or layers left in RAM would meet device tensors, so move whatever is left.
        left = [t for t in list(module.parameters()) + list(module.buffers()) if t.device != self.device]
        if left and self.device.type != "cpu":
            module.to(self.device)
        yield module

    def make_room(self, bytes_needed: int) -> None:
        if self.device.type != "cpu":
            self._mm.free_memory(bytes_needed + _ACTIVATION_BYTES, self.device)


class ManagedHost(HostAdapter):
    def __init__(self, name: str, memory_management, patcher_class):
        self.name = name
        self._mm = memory_management
        self._patcher_class = patcher_class

    def compute_device(self) -> torch.device:
        return torch.device(self._mm.get_torch_device())

    def placement(self):
        return ManagedPlacement(self._mm, self._patcher_class, self.compute_device())

    def free_memory(self, device: torch.device, sd_model=None) -> tuple[int | None, int | None]:
        """The manager's ``get_free_memory`` plus what it would evict for us (docs/hosts.md "Memory managers")."""
        read = self._mm.get_free_memory
        if device.type == "cpu":  # the managers answer with the system's available RAM there
            return int(read(device)), None
        free_ram, _ = super().free_memory(torch.device("cpu"))
        # Each loaded entry's ``model`` is a ModelPatcher whose ``model`` is the torch module; entries whose patcher
        # is gone are skipped.
        loaded = [getattr(getattr(entry, "model", None), "model", None)
                  for entry in list(getattr(self._mm, "current_loaded_models", None) or [])]
        evictable = device_bytes([module for module in loaded if isinstance(module, nn.Module)], device)
        return free_ram, int(read(device)) + evictable

    def before_host_sampling(self, p) -> None:
        """What the managed hosts' own txt2img sample() does right before sampling: fresh LoRA-applied objects, then
        token merging (ToMe) on the fresh UNet, which the reset would otherwise drop."""
        model = p.sd_model
        if getattr(model, "forge_objects_after_applying_lora", None) is None:
            return
        model.forge_objects = model.forge_objects_after_applying_lora.shallow_copy()
        from modules import sd_models

        sd_models.apply_token_merging(model, p.get_token_merging_ratio())

    def latent_channels(self, sd_model) -> int:
        vae = getattr(getattr(sd_model, "forge_objects", None), "vae", None)
        return int(getattr(vae, "latent_channels", None) or getattr(sd_model, "latent_channels", 4))

    def first_pass_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        # Neo's sample_hr_pass takes [0, 1], the others [-1, 1] (docs/hosts.md "The first pass").
        if self.name == "neo":
            return torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)
        return decoded

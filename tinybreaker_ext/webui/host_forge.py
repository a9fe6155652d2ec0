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
    """Loads a module through the host's ``load_models_gpu`` before a stage (reForge subclasses this)."""

    load_options: dict = {}

    def __init__(self, memory_management, patcher_class, device: torch.device, patchers: dict):
        self._mm = memory_management
        self._patcher_class = patcher_class
        self.device = device
        self._patchers = patchers
        self._used: set[int] = set()  # ids of the modules this run (one placement per first pass) used

    @contextlib.contextmanager
    def use(self, module: nn.Module) -> Iterator[nn.Module]:
        patcher = reuse_or_make_patcher(
            self._patchers, self._used, module,
            lambda m: self._patcher_class(self.wrap(m), load_device=self.device, offload_device=torch.device("cpu")),
            lambda existing: self.unwrap(existing.model))
        self._mm.load_models_gpu([patcher], memory_required=_ACTIVATION_BYTES, **self.load_options)
        _finish_move(module, self.device)
        yield module
        # Left loaded on purpose: the host's next load_models_gpu (its UNet) evicts it if room is needed.

    def wrap(self, module: nn.Module) -> nn.Module:
        return module

    def unwrap(self, managed: nn.Module) -> nn.Module:
        return managed

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
        reset_forge_objects(p)

    def latent_channels(self, sd_model) -> int:
        vae = getattr(getattr(sd_model, "forge_objects", None), "vae", None)
        return int(getattr(vae, "latent_channels", 4))


def reset_forge_objects(p) -> None:
    """What Forge's and reForge's own txt2img sample() do right before sampling: fresh LoRA-applied objects, then
    token merging (ToMe) on the fresh UNet, which the reset would otherwise drop."""
    model = p.sd_model
    if getattr(model, "forge_objects_after_applying_lora", None) is None:
        return
    model.forge_objects = model.forge_objects_after_applying_lora.shallow_copy()
    from modules import sd_models

    apply_token_merging = getattr(sd_models, "apply_token_merging", None)
    if apply_token_merging is not None and hasattr(p, "get_token_merging_ratio"):
        apply_token_merging(model, p.get_token_merging_ratio())


def reuse_or_make_patcher(patchers: dict, used: set, module: nn.Module, make_patcher, managed_module):
    """The host patcher of ``module``: the same object every run (the managers recognise loaded models by patcher
    identity, and we hold the strong reference they need). A module not seen before means our models were
    replaced (another checkpoint): patchers of modules this run has not used are dropped, so the replaced weights
    can be freed instead of being kept alive by us."""
    key = id(module)
    used.add(key)
    patcher = patchers.get(key)
    if patcher is not None and managed_module(patcher) is module:
        return patcher
    for stale in [known for known in patchers if known not in used]:
        del patchers[stale]
    patcher = make_patcher(module)
    patchers[key] = patcher
    return patcher


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

"""Where our modules live while a stage runs: a stage asks ``placement.use(module)`` for the time it computes, and the
placement decides whether the module moves to the compute device and back afterwards, so with ``offload`` the peak
device memory is the largest single stage, not the sum. ``MovePlacement`` is the core's own; host adapters
(``webui.host_*``) implement the protocol with the host's memory manager (docs/hosts.md "Memory managers")."""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import torch
from torch import nn


class ModulePlacement(Protocol):
    device: torch.device

    def use(self, module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
        """Context in which ``module`` is ready to compute on ``device``."""

    def make_room(self, bytes_needed: int) -> None:
        """Ask for free device memory before streaming weights by hand (T5 ``stream`` mode)."""


class MovePlacement:
    """The core's placement: ``gpu`` keeps modules on the device once moved; ``offload`` moves each one back to
    the CPU after its stage; ``auto`` is ``offload`` on CUDA devices with less than 12 GiB and ``gpu`` otherwise."""

    def __init__(self, device: torch.device | str = "cpu", policy: str = "auto"):
        self.device = torch.device(device)
        if policy == "auto" and self.device.type == "cuda" and torch.cuda.is_available():
            total = torch.cuda.get_device_properties(self.device).total_memory
            policy = "offload" if total < 12 * 1024**3 else "gpu"
        self.policy = "gpu" if policy == "auto" else policy

    @contextlib.contextmanager
    def use(self, module: nn.Module) -> Iterator[nn.Module]:
        module.to(self.device)
        try:
            yield module
        finally:
            if self.policy == "offload" and self.device.type != "cpu":
                module.to("cpu")
                _empty_cache(self.device)

    def make_room(self, bytes_needed: int) -> None:
        _empty_cache(self.device)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()

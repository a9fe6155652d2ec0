"""Copies the next group of weights to the compute device while the current group computes (``stream`` mode): on
CUDA from pinned host memory on a side stream the compute stream waits on; elsewhere (other accelerators, the meta
device the tests use) synchronously ahead, the same memory pattern without the overlap."""

from __future__ import annotations

from typing import Hashable, Iterable

import torch


def pin(tensor):
    """A page-locked copy of a CPU tensor (or ``QuantizedTensor``) for asynchronous copies; the tensor itself
    when pinning is refused (not enough lockable memory)."""
    try:
        return tensor.pin_memory()
    except RuntimeError:
        return tensor


class Prefetcher:
    """``start(key, items)`` begins moving ``items`` (name → stored tensor) to ``device``; ``take(key)`` returns the
    device copies once they are ready for the current stream, or None when nothing was started for ``key``."""

    def __init__(self, device: torch.device):
        self.device = device
        self._side = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: dict[Hashable, tuple[dict, object]] = {}

    def start(self, key: Hashable, items: Iterable[tuple[str, object]]) -> None:
        if self._side is None:
            self._pending[key] = ({name: value.to(self.device) for name, value in items}, None)
            return
        with torch.cuda.stream(self._side):  # sources are pinned host memory: nothing on the device to wait for
            copies = {name: value.to(self.device, non_blocking=True) for name, value in items}
            event = torch.cuda.Event()
            event.record(self._side)
        self._pending[key] = (copies, event)

    def take(self, key: Hashable) -> dict | None:
        entry = self._pending.pop(key, None)
        if entry is None:
            return None
        copies, event = entry
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for value in copies.values():
                value.record_stream(current)  # allocated on the side stream, freed after use on this one
        return copies

    def clear(self) -> None:
        self._pending.clear()

"""A fake accelerator for counting host↔device transfers on a CPU-only machine.

Tensors on the ``meta`` device stand for tensors on a GPU: they have shapes and dtypes but no values, so any
attempt to read one on the host is a transfer that would stall a real device. `TransferCounter` records every such
read (``item``, ``bool``, ``float``, ``tolist``, ``.cpu()``, ``.to("cpu")``, ``torch.equal``, data-dependent
shapes such as ``nonzero``) and every copy from the host onto the device, with the source line that asked for it.
A read is answered with zeros so that the run goes on and every read gets counted.
"""

from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode

DEVICE = torch.device("meta")

_VALUE_READS = {
    torch.Tensor.item: lambda t: False if t.dtype == torch.bool else (0.0 if t.is_floating_point() else 0),
    torch.Tensor.__bool__: lambda t: False,
    torch.Tensor.__float__: lambda t: 0.0,
    torch.Tensor.__int__: lambda t: 0,
    torch.Tensor.__index__: lambda t: 0,
    torch.Tensor.__format__: lambda t, spec="": format(0.0, spec),
    torch.Tensor.tolist: lambda t: torch.zeros(t.shape, dtype=t.dtype).tolist(),
    torch.Tensor.numpy: lambda t, **_: torch.zeros(t.shape, dtype=t.dtype).numpy(),
    torch.Tensor.__array__: lambda t, *_: torch.zeros(t.shape, dtype=t.dtype).numpy(),
    torch.Tensor.cpu: lambda t, **_: torch.zeros(t.shape, dtype=t.dtype),
    torch.Tensor.nonzero: lambda t, **_: torch.zeros((0, t.ndim), dtype=torch.long, device=t.device),
    torch.nonzero: lambda t, **_: torch.zeros((0, t.ndim), dtype=torch.long, device=t.device),
    torch.Tensor.unique: lambda t, **_: t.flatten()[:1],
    torch.equal: lambda t, *_: False,
    torch.allclose: lambda t, *_, **__: False,
}
_HOST_TO_DEVICE_FACTORIES = (torch.tensor, torch.as_tensor)


def _on_device(value) -> bool:
    return isinstance(value, torch.Tensor) and value.device.type == DEVICE.type


def _caller() -> str:
    """The innermost frame outside torch and this module: the line that asked for the transfer."""
    for frame in reversed(traceback.extract_stack()[:-2]):  # without this function and __torch_function__
        if "/torch/" not in frame.filename and not frame.filename.endswith("device_transfers.py"):
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.line}"
    return "?"


class TransferCounter(TorchFunctionMode):
    """Counts device→host reads and host→device copies of meta tensors, per step: ``reads[k]`` and ``copies[k]``
    list what happened after the k-th ``mark_step()`` (index 0: before the first)."""

    def __init__(self):
        super().__init__()
        self.reads: list[list[str]] = [[]]
        self.copies: list[list[str]] = [[]]

    def mark_step(self) -> None:
        self.reads.append([])
        self.copies.append([])

    def total_reads(self) -> int:
        return sum(map(len, self.reads))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        subject = args[0] if args else None
        if func in _VALUE_READS and _on_device(subject):
            self.reads[-1].append(f"{func.__name__} at {_caller()}")
            return _VALUE_READS[func](*args, **kwargs)
        if func is torch.Tensor.to and isinstance(subject, torch.Tensor):
            target = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
            if target is not None and _on_device(subject) and target.type != DEVICE.type:
                self.reads[-1].append(f"to({target}) at {_caller()}")
                return _VALUE_READS[torch.Tensor.cpu](subject)
            if target is not None and not _on_device(subject) and target.type == DEVICE.type:
                self.copies[-1].append(f"to({target}) at {_caller()}")
        elif func is torch.Tensor.__getitem__ and _on_device(subject) and _is_mask(args[1]):
            self.reads[-1].append(f"boolean indexing at {_caller()}")
            return subject.flatten()[:0]
        elif func is torch.Tensor.copy_ and isinstance(subject, torch.Tensor) and isinstance(args[1], torch.Tensor):
            if _on_device(args[1]) and not _on_device(subject):
                self.reads[-1].append(f"copy_ at {_caller()}")
                return subject
            if _on_device(subject) and not _on_device(args[1]):
                self.copies[-1].append(f"copy_ at {_caller()}")
        elif (func in _HOST_TO_DEVICE_FACTORIES and not _on_device(subject)
              and torch.device(kwargs.get("device") or "cpu").type == DEVICE.type):
            self.copies[-1].append(f"{func.__name__} at {_caller()}")
        return func(*args, **kwargs)


def _is_mask(index) -> bool:
    indices = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)

"""Reading a tensor's bytes from an open file into fresh RAM.

Hand-written because ``safetensors.safe_open`` (and numpy's memmap under the ``gguf`` reader) map the whole file:
mapped pages count as the process's resident memory until the file is closed, so a weight converted after reading
(fp8 → bf16, fp16 → fp32) would hold its file pages and its converted copy at the same time. A plain read holds only
what the caller keeps. A caller that converts each tensor as it reads it can pass one reused buffer (``into``), so
the file's form of the weights never lands in a new allocation at all: freed read buffers of tens of MB otherwise
stay in the C heap between larger allocations and add to the peak.
"""

from __future__ import annotations

import threading

import torch

_LOCK = threading.Lock()  # seek + read on a shared handle must not interleave


def read_bytes(stream, offset: int, nbytes: int, into: torch.Tensor | None = None) -> torch.Tensor:
    """``nbytes`` bytes at ``offset`` of the binary ``stream`` as a uint8 tensor; shorter when the file ends first.
    ``into``: a uint8 tensor of at least ``nbytes`` elements to read into (the result is a view of it) instead of
    fresh memory."""
    data = torch.empty(nbytes, dtype=torch.uint8) if into is None else into[:nbytes]
    with _LOCK:
        stream.seek(offset)
        got = stream.readinto(data.numpy())  # a buffered file fills the whole buffer unless the file ends first
    return data[:got]

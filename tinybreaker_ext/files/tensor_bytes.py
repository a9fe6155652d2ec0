"""Reading a tensor's bytes from an open file into fresh RAM.

Hand-written because ``safetensors.safe_open`` (and numpy's memmap under the ``gguf`` reader) map the whole file:
mapped pages count as the process's resident memory until the file is closed, so a weight converted after reading
(fp8 → bf16, fp16 → fp32) would hold its file pages and its converted copy at the same time. A plain read holds only
what the caller keeps.
"""

from __future__ import annotations

import threading

import torch

_LOCK = threading.Lock()  # seek + read on a shared handle must not interleave


def read_bytes(stream, offset: int, nbytes: int) -> torch.Tensor:
    """``nbytes`` bytes at ``offset`` of the binary ``stream`` as a uint8 tensor; shorter when the file ends first."""
    data = torch.empty(nbytes, dtype=torch.uint8)
    view = memoryview(data.numpy())
    got = 0
    with _LOCK:
        stream.seek(offset)
        while got < nbytes:
            count = stream.readinto(view[got:])
            if not count:
                break
            got += count
    return data[:got]

"""Reading a tensor's bytes from an open file into fresh RAM.

Hand-written because ``safetensors.safe_open`` (and numpy's memmap under the ``gguf`` reader) map the whole file:
mapped pages stay resident until the file is closed, so a converted weight (fp8 → bf16) would hold its file pages and
its copy at once. A caller that converts each tensor as it reads it can pass one reused buffer (``into``): freed read
buffers of tens of MB otherwise stay in the C heap between larger allocations and add to the peak.
"""

from __future__ import annotations

import threading

import torch

from ..errors import ModelFileError

_LOCK = threading.Lock()  # seek + read on a shared handle must not interleave


def read_bytes(stream, offset: int, nbytes: int, into: torch.Tensor | None = None) -> torch.Tensor:
    """``nbytes`` bytes at ``offset`` of ``stream`` as a uint8 tensor (shorter when the file ends first), read into
    fresh memory or into ``into`` (uint8, at least ``nbytes`` elements; the result is then a view of it)."""
    data = torch.empty(nbytes, dtype=torch.uint8) if into is None else into[:nbytes]
    with _LOCK:
        stream.seek(offset)
        got = stream.readinto(data.numpy())  # a buffered file fills the whole buffer unless the file ends first
    return data[:got]


class TensorFile:
    """What the ``.safetensors`` and GGUF readers share: the file opens at the first tensor read and stays open until
    `close` or the end of a ``with`` block; tensors already returned stay valid (they own their memory)."""

    path: str
    expected: str  # what a read error says the file should be
    complete_expected: str  # the same, for a file that ends early
    _stream = None

    def _read_tensor(self, name: str, offset: int, nbytes: int, into: torch.Tensor | None = None) -> torch.Tensor:
        """Tensor ``name``'s bytes, or a one-line ModelFileError when the read fails or comes short."""
        try:
            if self._stream is None:
                self._stream = open(self.path, "rb")
            data = read_bytes(self._stream, offset, nbytes, into)
        except OSError as error:
            raise ModelFileError(self.path, f"cannot read tensor '{name}' ({error.strerror or error})",
                                 self.expected) from None
        if data.numel() != nbytes:
            raise ModelFileError(self.path, f"cannot read tensor '{name}' (the file changed since it was opened)",
                                 self.complete_expected)
        return data

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

"""Lazy, validated access to one ``.safetensors`` file: opening reads and checks only its JSON header (broken files
fail there with a one-line ``ModelFileError``); ``file[key]`` reads just that tensor's bytes (``tensor_bytes``).
Hand-written because ``safetensors.safe_open`` gives no data offsets to read into a reused buffer, and its header
errors ("MetadataIncompleteBuffer") neither name the tensor nor tell a truncated download from a foreign file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.tensor_bytes import TensorFile

SAFETENSORS_EXPECTED = "a .safetensors model file"
COMPLETE_EXPECTED = "a complete .safetensors model file"
# safetensors itself refuses headers above 100 MB; anything larger is not a safetensors header.
MAX_HEADER_BYTES = 100_000_000
_bytes_read = 0  # tensor data read by this process through any SafetensorsFile (for the command line's status)

# safetensors dtype name -> (torch attribute name, bits per element)
_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "I16": ("int16", 16), "U16": ("uint16", 16),
    "I32": ("int32", 32), "U32": ("uint32", 32), "I64": ("int64", 64), "U64": ("uint64", 64),
    "F16": ("float16", 16), "BF16": ("bfloat16", 16), "F32": ("float32", 32), "F64": ("float64", 64),
    "F8_E4M3": ("float8_e4m3fn", 8), "F8_E5M2": ("float8_e5m2", 8), "F8_E8M0": ("float8_e8m0fnu", 8),
    "C64": ("complex64", 64), "F4": ("float4_e2m1fn_x2", 4), "F6_E2M3": ("", 6), "F6_E3M2": ("", 6),
}


def torch_dtype_for(dtype_name: str) -> torch.dtype | None:
    """The torch dtype of a safetensors dtype name, or None when this torch build has no such dtype."""
    attribute = _DTYPES.get(dtype_name, ("", 0))[0]
    value = getattr(torch, attribute, None) if attribute else None
    return value if isinstance(value, torch.dtype) else None


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it; ``start``/``end`` are offsets into the data section."""

    dtype_name: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    path: str
    header_size: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def _describe_foreign_file(head: bytes) -> str:
    """A guess at what a non-safetensors file is, from its first bytes, so the user knows what they picked."""
    if head.startswith(b"PK\x03\x04"):
        return "looks like a PyTorch zip/pickle checkpoint (.ckpt/.pt); only .safetensors and GGUF files are loaded"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "looks like a pickle file (.ckpt/.pt/.bin); only .safetensors and GGUF files are loaded"
    if head.startswith(b"GGUF"):
        return "is a GGUF file (TinyBreaker reads GGUF for the T5 encoder only)"
    if head.startswith(b"version https://git-lfs"):
        return "is a Git LFS pointer, not the model itself (download the real file)"
    if head.lstrip()[:1] == b"<":
        return "looks like an HTML/XML page (a failed download?)"
    return "not a safetensors file (bad header)"


def _fail(path: str, problem: str) -> ModelFileError:
    return ModelFileError(path, problem, SAFETENSORS_EXPECTED)


def _parse_entry(path: str, key: str, raw: object) -> TensorEntry:
    if not isinstance(raw, dict):
        raise _fail(path, f"corrupt header: entry '{key}' is not an object")
    dtype_name, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    valid = (isinstance(dtype_name, str) and isinstance(shape, list) and isinstance(offsets, list)
             and len(offsets) == 2 and all(isinstance(v, int) and v >= 0 for v in [*shape, *offsets])
             and offsets[0] <= offsets[1])
    if not valid:
        raise _fail(path, f"corrupt header: tensor '{key}' has no valid dtype/shape/data_offsets")
    entry = TensorEntry(dtype_name, tuple(shape), offsets[0], offsets[1])
    bits = _DTYPES.get(dtype_name, ("", 0))[1]
    if bits and entry.nbytes != math.ceil(math.prod(entry.shape) * bits / 8):
        raise _fail(path, f"corrupt header: tensor '{key}' ({dtype_name}, shape {list(shape)}) "
                          f"has {entry.nbytes} bytes of data")
    return entry


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Reads and validates the header without touching tensor data. Raises ModelFileError."""
    path = os.fspath(path)
    try:
        if os.path.isdir(path):  # checked first: Windows refuses to open a folder with "permission denied"
            raise _fail(path, "is a directory, not a file")
        with open(path, "rb") as stream:
            file_size = os.fstat(stream.fileno()).st_size
            head = stream.read(64)  # enough to recognise what a non-safetensors file is
            if file_size < 8:
                raise _fail(path, "file is empty (0 bytes)" if file_size == 0 else
                            f"file is too short to be a safetensors file ({file_size} bytes)")
            (header_size,) = struct.unpack("<Q", head[:8])
            stream.seek(8)
            header_bytes = stream.read(header_size) if header_size <= MAX_HEADER_BYTES else b""
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except PermissionError:
        raise _fail(path, "permission denied") from None
    except OSError as error:
        raise _fail(path, f"cannot read file ({error.strerror or error})") from None
    if not header_bytes.lstrip().startswith(b"{"):
        raise _fail(path, _describe_foreign_file(head))
    if header_size > file_size - 8:
        raise ModelFileError(path, f"truncated: {file_size} bytes on disk, cut inside the {header_size}-byte header "
                                   "(incomplete download?)", COMPLETE_EXPECTED)
    try:
        raw_header = json.loads(header_bytes)
        metadata = raw_header.pop("__metadata__", None) or {}
    except ValueError:
        raise _fail(path, _describe_foreign_file(head)) from None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "corrupt header: __metadata__ must map strings to strings")
    tensors = {key: _parse_entry(path, key, raw) for key, raw in raw_header.items()}

    data_size = file_size - 8 - header_size
    needed = max((entry.end for entry in tensors.values()), default=0)
    if needed > data_size:
        raise ModelFileError(path, f"truncated: {file_size} bytes on disk but the header needs "
                                   f"{8 + header_size + needed} ({needed - data_size} missing; incomplete download?)",
                             COMPLETE_EXPECTED)
    position = 0
    for key, entry in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if entry.start != position:
            raise _fail(path, f"corrupt header: tensor '{key}' data overlaps or leaves a gap at byte {position}")
        position = entry.end
    if position != data_size:
        raise _fail(path, f"corrupt file: {data_size - position} unexpected bytes after the tensor data")
    return SafetensorsHeader(path, header_size, tensors, metadata)


class SafetensorsView(Mapping[str, torch.Tensor]):
    """The tensors under ``prefix`` (prefix removed), read when indexed; shape, dtype and nbytes from the header."""

    def __init__(self, file: "SafetensorsFile", prefix: str = ""):
        self._file = file
        self.prefix = prefix
        self.header: SafetensorsHeader = file.header
        self.path = self.header.path

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._file._read(self.prefix + key)

    def read_into(self, key: str, buffer: torch.Tensor) -> torch.Tensor:
        """The tensor read into ``buffer`` (uint8, at least ``nbytes(key)`` elements): a view valid until the buffer is
        reused, for callers that convert each tensor right away."""
        return self._file._read(self.prefix + key, into=buffer)

    def __iter__(self) -> Iterator[str]:
        return (key[len(self.prefix):] for key in sorted(self.header.tensors) if key.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(key.startswith(self.prefix) for key in self.header.tensors)

    def __contains__(self, key: object) -> bool:  # Mapping's default would read the tensor
        return isinstance(key, str) and (self.prefix + key) in self.header.tensors

    def entry(self, key: str) -> TensorEntry:
        return self.header.tensors[self.prefix + key]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entry(key).shape

    def dtype(self, key: str) -> torch.dtype:
        name = self.entry(key).dtype_name
        dtype = torch_dtype_for(name)
        if dtype is None:
            raise ModelFileError(self.path, f"tensor '{self.prefix + key}' has dtype {name}, "
                                            f"which torch {torch.__version__} cannot represent")
        return dtype

    def nbytes(self, key: str) -> int:
        return self.entry(key).nbytes

    def prefixed(self, prefix: str) -> "SafetensorsView":
        """A lazy view of the keys under ``prefix`` (prefix removed); views nest."""
        return SafetensorsView(self._file, self.prefix + prefix)


class SafetensorsFile(SafetensorsView, TensorFile):
    """An open ``.safetensors`` file: a lazy ``Mapping[str, Tensor]`` and a context manager."""

    expected, complete_expected = SAFETENSORS_EXPECTED, COMPLETE_EXPECTED

    def __init__(self, path: str | os.PathLike):
        self.header = read_safetensors_header(path)
        super().__init__(self, "")

    def _read(self, full_key: str, into: torch.Tensor | None = None) -> torch.Tensor:
        entry, dtype = self.entry(full_key), self.dtype(full_key)
        data = self._read_tensor(full_key, 8 + self.header.header_size + entry.start, entry.nbytes, into)
        global _bytes_read
        _bytes_read += entry.nbytes
        try:
            return data.view(dtype).reshape(entry.shape)
        except RuntimeError as error:  # packed sub-byte dtypes (F4) do not map one element per value
            raise ModelFileError(self.path, f"tensor '{full_key}' ({entry.dtype_name}) cannot be read as {dtype} "
                                            f"({error})") from None


def bytes_read() -> int:
    """Tensor bytes read so far by this process from any ``.safetensors`` file."""
    return _bytes_read

"""Header-validated access to one GGUF file (llama.cpp's format), parsed with the ``gguf`` package.

Opening reads only the header (names, ggml types, shapes, offsets and the scalar metadata). ``file[name]`` reads
one tensor with a plain file read into RAM (``tensor_bytes``; no memory map stays behind):
float tensors come back as torch tensors, block-quantized ones as ``QuantizedTensor``. The ``gguf`` package is
imported only when a GGUF file is opened: hosts without it run everything else, and choosing a GGUF file there gives
a one-line message saying what to install. Broken files fail at open time with a one-line ``ModelFileError``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from ..errors import ModelFileError
from ..models.ggml_quants import QUANT_TYPES, QuantizedTensor, quantized_tensor
from .tensor_bytes import read_bytes

GGUF_MAGIC = b"GGUF"
GGUF_EXPECTED = "a GGUF model file"
COMPLETE_EXPECTED = "a complete GGUF model file"
INSTALL_HINT = "reading GGUF files needs the 'gguf' package (pip install gguf)"
FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
READABLE_TYPES = tuple(FLOAT_TYPES) + tuple(QUANT_TYPES)


def is_gguf_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the GGUF magic (False for anything unreadable)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == GGUF_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class GGUFTensorEntry:
    """One tensor as the header describes it: ggml type name, shape in torch order, absolute file offset."""

    type_name: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def readable(self) -> bool:
        return self.type_name in READABLE_TYPES


@dataclass(frozen=True)
class GGUFHeader:
    path: str
    file_size: int
    tensors: dict[str, GGUFTensorEntry]
    metadata: dict[str, object]  # scalar and string fields; arrays (the vocabulary) are left out
    file_type_name: str | None  # llama.cpp's name for the mix of quantizations, e.g. "Q4_K_M"

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None


def _fail(path: str, problem: str, expected: str = GGUF_EXPECTED) -> ModelFileError:
    return ModelFileError(path, problem, expected)


def import_gguf(path: str):
    """The ``gguf`` module, or a ModelFileError naming the file and what to install."""
    try:
        import gguf
    except ImportError:
        raise _fail(path, f"is a GGUF file; {INSTALL_HINT}") from None
    return gguf


def _scalar_fields(reader, gguf) -> dict[str, object]:
    """Scalar and string metadata, decoded the way every gguf version since 0.10 stores them."""
    fields = {}
    for name, field in reader.fields.items():
        if not field.types or name.startswith("GGUF."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.STRING:
            fields[name] = bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
        elif kind != gguf.GGUFValueType.ARRAY:
            fields[name] = field.parts[field.data[0]].tolist()[0]
    return fields


def _file_type_name(metadata: dict, gguf) -> str | None:
    value = metadata.get("general.file_type")
    try:
        name = gguf.LlamaFileType(int(value)).name
    except (TypeError, ValueError):
        return None
    for prefix in ("MOSTLY_", "ALL_"):
        name = name.removeprefix(prefix)
    return name


def read_gguf_header(path: str | os.PathLike) -> GGUFHeader:
    """Reads and validates the header without reading tensor data. Raises ModelFileError."""
    path = os.fspath(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except OSError as error:
        raise _fail(path, f"cannot read file ({error.strerror or error})") from None
    if stat.S_ISDIR(status.st_mode):
        raise _fail(path, "is a directory, not a file")
    if not is_gguf_file(path):
        raise _fail(path, "not a GGUF file (no GGUF magic)")
    gguf = import_gguf(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except ValueError as error:
        if "reshape" in str(error):  # numpy could not shape a tensor's data: the file ends before it does
            raise ModelFileError(path, f"truncated: {status.st_size} bytes on disk, the tensor data is cut short "
                                       "(incomplete download?)", COMPLETE_EXPECTED) from None
        raise _fail(path, f"corrupt GGUF header ({error})") from None
    except OSError as error:
        raise _fail(path, f"cannot read file ({error.strerror or error})") from None
    except Exception as error:  # the third-party parser fails in many ways on a bad header; each is one line here
        raise _fail(path, f"corrupt or truncated GGUF header ({type(error).__name__}: {error})") from None

    tensors = {}
    for tensor in reader.tensors:
        type_name = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
        shape = tuple(int(dim) for dim in reversed(tensor.shape.tolist()))
        entry = GGUFTensorEntry(type_name, shape, int(tensor.data_offset), int(tensor.n_bytes))
        if entry.offset + entry.nbytes > status.st_size:
            raise ModelFileError(path, f"truncated: {status.st_size} bytes on disk but tensor '{tensor.name}' ends at "
                                       f"byte {entry.offset + entry.nbytes} (incomplete download?)", COMPLETE_EXPECTED)
        tensors[tensor.name] = entry
    metadata = _scalar_fields(reader, gguf)
    header = GGUFHeader(path, status.st_size, tensors, metadata, _file_type_name(metadata, gguf))
    del reader  # drops the reader's memory map of the whole file
    return header


class GGUFFile(Mapping[str, object]):
    """An open GGUF file: a lazy ``Mapping`` of its tensors under their GGUF names, and a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.header = read_gguf_header(path)
        self._stream = None

    @property
    def path(self) -> str:
        return self.header.path

    @property
    def metadata(self) -> dict[str, object]:
        return self.header.metadata

    @property
    def file_size(self) -> int:
        return self.header.file_size

    def entry(self, name: str) -> GGUFTensorEntry:
        return self.header.tensors[name]

    def __getitem__(self, name: str) -> torch.Tensor | QuantizedTensor:
        entry = self.header.tensors[name]
        if not entry.readable:
            raise ModelFileError(self.path, f"tensor '{name}' is {entry.type_name}, which TinyBreaker does not read",
                                 f"a GGUF file of {', '.join(READABLE_TYPES)} tensors")
        try:
            if self._stream is None:
                self._stream = open(self.path, "rb")
            data = read_bytes(self._stream, entry.offset, entry.nbytes)
        except OSError as error:
            raise ModelFileError(self.path, f"cannot read tensor '{name}' ({error.strerror or error})",
                                 GGUF_EXPECTED) from None
        if data.numel() != entry.nbytes:
            raise ModelFileError(self.path, f"cannot read tensor '{name}' (the file changed since it was opened)",
                                 COMPLETE_EXPECTED)
        if entry.type_name in FLOAT_TYPES:
            return data.view(FLOAT_TYPES[entry.type_name]).reshape(entry.shape)
        return quantized_tensor(data, entry.type_name, entry.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.header.tensors)

    def __len__(self) -> int:
        return len(self.header.tensors)

    def __contains__(self, name: object) -> bool:
        return name in self.header.tensors

    def __repr__(self) -> str:
        return f"<GGUFFile {self.path!r} tensors={len(self)}>"

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """Opens and validates ``path``; raises ModelFileError naming the file and the problem."""
    return GGUFFile(path)

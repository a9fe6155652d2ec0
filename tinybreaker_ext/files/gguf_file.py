"""Header-validated access to one GGUF T5 file (docs/model-files.md "GGUF T5 files"), like ``safetensors_file``:
opening reads only the header (broken files fail there); ``file[key]`` reads one tensor (``tensor_bytes``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from ..errors import ModelFileError
from ..models.ggml_quants import QUANT_TYPES, QuantizedTensor, quantized_tensor
from .state_dict import find_signature_prefix
from .tensor_bytes import TensorFile

GGUF_MAGIC = b"GGUF"
GGUF_EXPECTED = "a GGUF model file"
COMPLETE_EXPECTED = "a complete GGUF model file"
INSTALL_HINT = "reading GGUF files needs the 'gguf' package (pip install gguf)"
FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
READABLE_TYPES = tuple(FLOAT_TYPES) + tuple(QUANT_TYPES)
GGUF_T5_SIGNATURE = ("enc.blk.0.attn_q.weight", "token_embd.weight")
# llama.cpp's ``convert_hf_to_gguf.py`` names for ``T5EncoderModel`` (gguf's ``MODEL_TENSOR.ENC_*``) → HF keys
_WHOLE_NAMES = {"token_embd.weight": "shared.weight", "enc.output_norm.weight": "encoder.final_layer_norm.weight"}
_BLOCK_PARTS = {
    "attn_q": "layer.0.SelfAttention.q",
    "attn_k": "layer.0.SelfAttention.k",
    "attn_v": "layer.0.SelfAttention.v",
    "attn_o": "layer.0.SelfAttention.o",
    "attn_norm": "layer.0.layer_norm",
    "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
    "ffn_gate": "layer.1.DenseReluDense.wi_0",
    "ffn_up": "layer.1.DenseReluDense.wi_1",
    "ffn_down": "layer.1.DenseReluDense.wo",
    "ffn_norm": "layer.1.layer_norm",
}
_BLOCK_NAME = re.compile(r"^enc\.blk\.(\d+)\.(\w+)\.(weight|bias)$")


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


@dataclass(frozen=True)
class GGUFHeader:
    path: str
    tensors: dict[str, GGUFTensorEntry]
    metadata: dict[str, object]  # scalar and string fields; arrays (the vocabulary) are left out
    file_type_name: str | None  # llama.cpp's name for the mix of quantizations, e.g. "Q4_K_M"


def _fail(path: str, problem: str) -> ModelFileError:
    return ModelFileError(path, problem, GGUF_EXPECTED)


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
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def read_gguf_header(path: str | os.PathLike) -> GGUFHeader:
    """Reads and validates a GGUF header (callers check ``is_gguf_file`` first), no tensor data; ModelFileError."""
    path = os.fspath(path)
    try:
        import gguf
    except ImportError:
        raise _fail(path, f"is a GGUF file; {INSTALL_HINT}") from None
    try:
        file_size = os.path.getsize(path)
        reader = gguf.GGUFReader(path, "r")
    except ValueError as error:
        if "reshape" in str(error):  # numpy could not shape a tensor's data: the file ends before it does
            raise ModelFileError(path, f"truncated: {file_size} bytes on disk, the tensor data is cut short "
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
        if entry.offset + entry.nbytes > file_size:
            raise ModelFileError(path, f"truncated: {file_size} bytes on disk but tensor '{tensor.name}' ends at "
                                       f"byte {entry.offset + entry.nbytes} (incomplete download?)", COMPLETE_EXPECTED)
        tensors[tensor.name] = entry
    metadata = _scalar_fields(reader, gguf)
    del reader  # drops the reader's memory map of the whole file
    return GGUFHeader(path, tensors, metadata, _file_type_name(metadata, gguf))


def _hf_t5_name(name: str, gated: bool) -> str:
    """The HF key of a llama.cpp T5 tensor name (no prefix); names of other tensors come back unchanged."""
    match = _BLOCK_NAME.match(name)
    if match is None or match.group(2) not in _BLOCK_PARTS:
        return _WHOLE_NAMES.get(name, name)
    part = _BLOCK_PARTS[match.group(2)]
    if match.group(2) == "ffn_up" and not gated:
        part = "layer.1.DenseReluDense.wi"
    return f"encoder.block.{match.group(1)}.{part}.{match.group(3)}"


def hf_t5_names(names) -> dict[str, str]:
    """HF key (without the outer prefix of all-in-one files) → GGUF name, for the tensors of the T5 encoder."""
    prefix = find_signature_prefix(names, *GGUF_T5_SIGNATURE) or ""
    gated = prefix + "enc.blk.0.ffn_gate.weight" in names
    return {_hf_t5_name(name[len(prefix):], gated): name for name in names if name.startswith(prefix)}


class GGUFFile(Mapping[str, object], TensorFile):
    """An open GGUF file and context manager: a lazy ``Mapping`` of its T5 encoder's tensors under HF
    ``T5EncoderModel`` keys (``hf_t5_names``). ``shape``/``dtype``/``nbytes`` come from the header; ``dtype`` is None
    for block-quantized tensors and refuses a ggml type TinyBreaker cannot dequantize, before any data is read."""

    expected, complete_expected = GGUF_EXPECTED, COMPLETE_EXPECTED

    def __init__(self, path: str | os.PathLike):
        self.header = read_gguf_header(path)
        self.path = self.header.path
        self._names = hf_t5_names(self.header.tensors)  # HF key → GGUF name

    def _entry(self, key: str) -> GGUFTensorEntry:
        return self.header.tensors[self._names[key]]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entry(key).shape

    def nbytes(self, key: str) -> int:
        return self._entry(key).nbytes

    def dtype(self, key: str) -> torch.dtype | None:
        entry = self._entry(key)
        if entry.type_name not in READABLE_TYPES:
            raise ModelFileError(self.path, f"tensor '{self._names[key]}' is {entry.type_name}, which TinyBreaker "
                                            "does not read", f"a GGUF T5 of {', '.join(READABLE_TYPES)} tensors")
        return FLOAT_TYPES.get(entry.type_name)

    def __getitem__(self, key: str) -> torch.Tensor | QuantizedTensor:
        dtype, entry = self.dtype(key), self._entry(key)
        data = self._read_tensor(self._names[key], entry.offset, entry.nbytes)
        if dtype is not None:
            return data.view(dtype).reshape(entry.shape)
        return quantized_tensor(data, entry.type_name, entry.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names

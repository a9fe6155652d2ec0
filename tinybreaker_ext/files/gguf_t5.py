"""llama.cpp's T5 tensor names (city96's ``t5-v1_1-xxl-encoder-*.gguf``, architecture ``t5encoder``) as the HF
``T5EncoderModel`` keys the rest of TinyBreaker uses.

The names are those of llama.cpp's ``convert_hf_to_gguf.py`` for ``T5EncoderModel`` (gguf's ``MODEL_TENSOR.ENC_*``):
``token_embd`` is ``shared``; per block ``attn_q/k/v/o``, ``attn_norm``, ``attn_rel_b`` (block 0 only),
``ffn_gate`` (``wi_0``), ``ffn_up`` (``wi_1``, or ``wi`` in a non-gated T5), ``ffn_down`` (``wo``), ``ffn_norm``;
``enc.output_norm`` is ``encoder.final_layer_norm``. A prefix before them (e.g. all-in-one files) is kept.
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping

import torch

from ..errors import ModelFileError
from .gguf_file import FLOAT_TYPES, READABLE_TYPES, GGUFFile, GGUFTensorEntry

GGUF_T5_SIGNATURE = ("enc.blk.0.attn_q.weight", "token_embd.weight")
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


def hf_t5_name(name: str, prefix: str = "", gated: bool = True) -> str:
    """The HF key of a llama.cpp T5 tensor name under ``prefix``; names of other tensors come back unchanged."""
    if not name.startswith(prefix):
        return name
    rest = name[len(prefix):]
    if rest == "token_embd.weight":
        return prefix + "shared.weight"
    if rest == "enc.output_norm.weight":
        return prefix + "encoder.final_layer_norm.weight"
    match = _BLOCK_NAME.match(rest)
    if match is None or match.group(2) not in _BLOCK_PARTS:
        return name
    part = _BLOCK_PARTS[match.group(2)]
    if match.group(2) == "ffn_up" and not gated:
        part = "layer.1.DenseReluDense.wi"
    return f"{prefix}encoder.block.{match.group(1)}.{part}.{match.group(3)}"


def gguf_t5_prefix(names) -> str | None:
    """The prefix under which a GGUF file holds a llama.cpp T5 encoder, else None."""
    from .classify import find_signature_prefix

    return find_signature_prefix(names, *GGUF_T5_SIGNATURE)


class T5GGUFView(Mapping[str, object]):
    """The tensors of a GGUF T5 file under HF keys (lazy: nothing is read until indexed). Like the safetensors
    views it answers ``shape``/``dtype``/``nbytes`` from the header; ``dtype`` is None for block-quantized tensors
    and a tensor of a ggml type TinyBreaker cannot dequantize is refused there, before any data is read."""

    def __init__(self, file: GGUFFile, names: dict[str, str] | None = None):
        self._file = file
        if names is None:
            prefix = gguf_t5_prefix(file.header.tensors) or ""
            gated = prefix + "enc.blk.0.ffn_gate.weight" in file.header.tensors
            names = {hf_t5_name(name, prefix, gated): name for name in file.header.tensors}
        self._names = names  # HF key → GGUF name

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def metadata(self) -> dict[str, object]:
        return self._file.metadata

    def entry(self, key: str) -> GGUFTensorEntry:
        return self._file.entry(self._names[key])

    def __getitem__(self, key: str):
        self.dtype(key)
        return self._file[self._names[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entry(key).shape

    def dtype(self, key: str) -> torch.dtype | None:
        entry = self.entry(key)
        if not entry.readable:
            raise ModelFileError(self.path, f"tensor '{self._names[key]}' is {entry.type_name}, which TinyBreaker "
                                            "does not read", f"a GGUF T5 of {', '.join(READABLE_TYPES)} tensors")
        return FLOAT_TYPES.get(entry.type_name)

    def nbytes(self, key: str) -> int:
        return self.entry(key).nbytes

    def prefixed(self, prefix: str) -> "T5GGUFView":
        return T5GGUFView(self._file, {key[len(prefix):]: name for key, name in self._names.items()
                                       if key.startswith(prefix)})


def hf_t5_view(file: GGUFFile) -> T5GGUFView:
    return T5GGUFView(file)

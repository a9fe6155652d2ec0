"""GGML block-quantized weights kept as raw bytes, dequantized in torch on whatever device holds them. Hand-written
because the ``gguf`` package dequantizes in numpy on the CPU only (far too slow to run per layer at every encode, and
useless on a GPU). Block layouts are ggml's (``ggml-common.h``); the float32 values and their order of operations are
``gguf.quants.dequantize``'s (the tests compare them). Only torch is imported."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

QK_K = 256  # elements per k-quant super-block
CHUNK_ELEMENTS = 1 << 20  # dequantized per step: bounds the float32 temporaries to a few MB per weight


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 stored at byte ``start`` of each block, as float32 ``[n, 1]``."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _shifts(values, device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8, device=device)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """``[n, 16]`` bytes → ``[n, 32]``: the low nibbles (elements 0–15), then the high nibbles (16–31)."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=1)


def _bits32(qh: torch.Tensor) -> torch.Tensor:
    """``[n, 4]`` little-endian bytes → ``[n, 32]`` bits (element j is bit j)."""
    return ((qh.unsqueeze(-1) >> _shifts(range(8), qh.device)) & 1).reshape(qh.shape[0], 32)


def _q8_0(blocks: torch.Tensor) -> torch.Tensor:
    return blocks[:, 2:].contiguous().view(torch.int8).float() * _f16(blocks, 0)


def _q4_0(blocks: torch.Tensor) -> torch.Tensor:
    q = _nibbles(blocks[:, 2:]).to(torch.int8) - 8
    return _f16(blocks, 0) * q.float()


def _q4_1(blocks: torch.Tensor) -> torch.Tensor:
    return _f16(blocks, 0) * _nibbles(blocks[:, 4:]).float() + _f16(blocks, 2)


def _q5_0(blocks: torch.Tensor) -> torch.Tensor:
    q = (_nibbles(blocks[:, 6:]) | (_bits32(blocks[:, 2:6]) << 4)).to(torch.int8) - 16
    return _f16(blocks, 0) * q.float()


def _q5_1(blocks: torch.Tensor) -> torch.Tensor:
    q = _nibbles(blocks[:, 8:]) | (_bits32(blocks[:, 4:8]) << 4)
    return _f16(blocks, 0) * q.float() + _f16(blocks, 2)


def _k_scales(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and min of each 32-element sub-block of a Q4_K/Q5_K super-block, ``[n, 8, 1]`` each: the 6-bit values
    packed in bytes 4–15 times the super-block's float16 ``d`` and ``dmin``."""
    packed = blocks[:, 4:16].reshape(-1, 3, 4)
    d, m, high = packed[:, 0], packed[:, 1], packed[:, 2]
    sc = torch.cat([d & 0x3F, (high & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mins = torch.cat([m & 0x3F, (high >> 4) | ((m >> 2) & 0x30)], dim=-1)
    n = blocks.shape[0]
    return (_f16(blocks, 0) * sc.float()).reshape(n, -1, 1), (_f16(blocks, 2) * mins.float()).reshape(n, -1, 1)


def _q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dm = _k_scales(blocks)
    q = (blocks[:, 16:].reshape(n, -1, 1, 32) >> _shifts([0, 4], blocks.device).reshape(1, 1, 2, 1)) & 0x0F
    return (d * q.reshape(n, -1, 32).float() - dm).reshape(n, QK_K)


def _q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dm = _k_scales(blocks)
    ql = (blocks[:, 48:].reshape(n, -1, 1, 32) >> _shifts([0, 4], blocks.device).reshape(1, 1, 2, 1)) & 0x0F
    qh = (blocks[:, 16:48].reshape(n, -1, 1, 32) >> _shifts(range(8), blocks.device).reshape(1, 1, 8, 1)) & 1
    q = ql.reshape(n, -1, 32) | (qh.reshape(n, -1, 32) << 4)
    return (d * q.float() - dm).reshape(n, QK_K)


def _q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
    d = (_f16(blocks, 208) * scales).reshape(n, QK_K // 16, 1)
    ql = (blocks[:, :128].reshape(n, -1, 1, 64) >> _shifts([0, 4], blocks.device).reshape(1, 1, 2, 1)) & 0x0F
    qh = (blocks[:, 128:192].reshape(n, -1, 1, 32) >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 1, 4, 1)) & 3
    q = (ql.reshape(n, -1, 32) | (qh.reshape(n, -1, 32) << 4)).to(torch.int8) - 32
    return (d * q.reshape(n, QK_K // 16, -1).float()).reshape(n, QK_K)


def _q3_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    hmask, qs, scales = blocks[:, :32], blocks[:, 32:96], blocks[:, 96:108]
    low = (scales[:, :8].reshape(n, 1, 8) >> _shifts([0, 4], blocks.device).reshape(1, 2, 1)).reshape(n, 16)
    high = (scales[:, 8:].reshape(n, 1, 4) >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 4, 1)).reshape(n, 16)
    sc = ((low & 0x0F) | ((high & 0x03) << 4)).to(torch.int8) - 32
    dl = (_f16(blocks, 108) * sc.float()).reshape(n, 16, 1)
    ql = (qs.reshape(n, -1, 1, 32) >> _shifts([0, 2, 4, 6], blocks.device).reshape(1, 1, 4, 1)).reshape(n, 16, 16) & 3
    qh = (hmask.reshape(n, -1, 1, 32) >> _shifts(range(8), blocks.device).reshape(1, 1, 8, 1)).reshape(n, 16, 16) & 1
    q = ql.to(torch.int8) - ((qh ^ 1) << 2).to(torch.int8)  # a set high bit means no offset of −4
    return (dl * q.float()).reshape(n, QK_K)


@dataclass(frozen=True)
class QuantType:
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    dequantize_blocks: Callable[[torch.Tensor], torch.Tensor]  # uint8 [n, type_size] → float32 [n, block_size]


QUANT_TYPES: dict[str, QuantType] = {q.name: q for q in (
    QuantType("Q8_0", 32, 34, _q8_0),
    QuantType("Q4_0", 32, 18, _q4_0),
    QuantType("Q4_1", 32, 20, _q4_1),
    QuantType("Q5_0", 32, 22, _q5_0),
    QuantType("Q5_1", 32, 24, _q5_1),
    QuantType("Q3_K", QK_K, 110, _q3_k),
    QuantType("Q4_K", QK_K, 144, _q4_k),
    QuantType("Q5_K", QK_K, 176, _q5_k),
    QuantType("Q6_K", QK_K, 210, _q6_k),
)}


@dataclass(frozen=True)
class QuantizedTensor:
    """One weight of logical ``shape`` held as ggml blocks: ``data`` is uint8 ``[*shape[:-1], row_bytes]``. Moves
    between devices like a tensor; ``rows`` gathers whole rows (a quantized token embedding is looked up that way)."""

    data: torch.Tensor
    qtype: QuantType
    shape: tuple[int, ...]

    dtype = None  # not a torch dtype: code asking for one (fp8 checks, ``in`` tests) sees "none of those"

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    def numel(self) -> int:
        return math.prod(self.shape)

    def to(self, device, non_blocking: bool = False) -> "QuantizedTensor":
        return QuantizedTensor(self.data.to(device, non_blocking=non_blocking), self.qtype, self.shape)

    def pin_memory(self) -> "QuantizedTensor":
        return QuantizedTensor(self.data.pin_memory(), self.qtype, self.shape)

    def record_stream(self, stream) -> None:
        self.data.record_stream(stream)

    def rows(self, index: torch.Tensor) -> "QuantizedTensor":
        return QuantizedTensor(self.data[index], self.qtype, tuple(index.shape) + self.shape[1:])

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        blocks = self.data.reshape(-1, self.qtype.type_size)
        out = torch.empty(blocks.shape[0] * self.qtype.block_size, dtype=dtype, device=self.data.device)
        step = max(1, CHUNK_ELEMENTS // self.qtype.block_size)
        for start in range(0, blocks.shape[0], step):
            values = self.qtype.dequantize_blocks(blocks[start:start + step])
            out[start * self.qtype.block_size:start * self.qtype.block_size + values.numel()] = values.reshape(-1)
        return out.reshape(self.shape)


def quantized_tensor(data: torch.Tensor, qtype_name: str, shape: tuple[int, ...]) -> QuantizedTensor:
    """Wraps raw blocks (any uint8 tensor of the right size); raises KeyError for a type not in ``QUANT_TYPES`` and
    ValueError when the byte count does not fit ``shape``."""
    qtype = QUANT_TYPES[qtype_name]
    if not shape or shape[-1] % qtype.block_size:
        raise ValueError(f"rows of {shape[-1] if shape else 0} elements are not whole {qtype.name} blocks")
    row_bytes = shape[-1] // qtype.block_size * qtype.type_size
    expected = row_bytes * math.prod(shape[:-1])
    if data.numel() != expected:
        raise ValueError(f"{data.numel()} bytes of {qtype.name} data for shape {list(shape)} (needs {expected})")
    return QuantizedTensor(data.reshape(*shape[:-1], row_bytes), qtype, shape)

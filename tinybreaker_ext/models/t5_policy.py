"""How T5 computes, decided in this one place: the compute dtype (bfloat16 where the hardware runs it natively) and
how many bytes of weights converted to that dtype may be kept between encodes."""

from __future__ import annotations

import torch

# Converted weights are kept only while this much memory stays free for the other stages (PixArt-Sigma in fp32 is
# 2.4 GB, the transcoder and the VAE pass need more for activations) and for the host itself.
KEEP_FREE_BYTES = 6 << 30


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: CUDA compute capability ≥ 8 (Ampere), or a CPU with
    AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32 (older torch cannot tell: False)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_capability(device)[0] >= 8
        except (RuntimeError, AssertionError):
            return False
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def resolve_compute_dtype(choice: torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """``choice``, else bfloat16 where ``bf16_is_fast`` and float32 elsewhere (the reference's dtype; never float16:
    T5 overflows in it)."""
    return choice or (torch.bfloat16 if bf16_is_fast(device) else torch.float32)


def available_ram_bytes() -> int | None:
    """RAM the system can hand out now (psutil where installed, else /proc/meminfo), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def conversion_budget(mode: str, device: torch.device | str, stored_bytes: int = 0) -> int:
    """Extra bytes that weights converted to the compute dtype may take, so later encodes skip the conversion:
    nothing in ``stream`` (its point is to hold the file's bytes only); in ``gpu`` and ``cpu`` the free memory of the
    device holding the weights (CUDA memory or RAM; nothing when unknown) beyond ``KEEP_FREE_BYTES`` and beyond
    ``stored_bytes``, what the weights as stored are about to take."""
    holder = torch.device(device) if mode == "gpu" else torch.device("cpu")
    if mode == "stream" or holder.type not in ("cuda", "cpu"):
        return 0
    from ..memory_plan import free_device_bytes  # memory_plan imports this module

    free_bytes = free_device_bytes(holder) if holder.type == "cuda" else available_ram_bytes()
    return 0 if free_bytes is None else max(0, free_bytes - stored_bytes - KEEP_FREE_BYTES)

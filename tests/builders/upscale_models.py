"""A tiny random upscale model in Real-ESRGAN's key layout (RRDBNet, ``RealESRGAN_x4plus``: conv_first,
body.N.rdbM.convK, conv_body, conv_up1/2, conv_hr, conv_last), which spandrel recognises by its keys and sizes by
its shapes. The real file has 64 features, 23 blocks and 32 growth channels; this one has 8, 1 and 32 (spandrel
reads the growth as 32, as every published ESRGAN file has it).

    python tests/builders/upscale_models.py <folder>     # writes tiny_esrgan_x4.safetensors there
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from builders.common import random_tensor, save_safetensors  # noqa: E402


def esrgan_keys(features: int = 8, blocks: int = 1, growth: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys: dict[str, torch.Tensor] = {}

    def conv(name: str, out_channels: int, in_channels: int) -> None:
        keys[f"{name}.weight"] = random_tensor((out_channels, in_channels, 3, 3), generator=generator, std=0.1)
        keys[f"{name}.bias"] = random_tensor((out_channels,), generator=generator, std=0.01)

    conv("conv_first", features, 3)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for index in range(1, 5):
                conv(f"body.{block}.rdb{rdb}.conv{index}", growth, features + (index - 1) * growth)
            conv(f"body.{block}.rdb{rdb}.conv5", features, features + 4 * growth)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, features, features)
    conv("conv_last", 3, features)
    return keys


def write_esrgan(folder: str, name: str = "tiny_esrgan_x4.safetensors") -> str:
    return save_safetensors(esrgan_keys(), os.path.join(folder, name))


if __name__ == "__main__":
    print(write_esrgan(sys.argv[1] if len(sys.argv) > 1 else "."))

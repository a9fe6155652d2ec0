"""Infers the configuration of an SD1 UNet from the tensor shapes of its ldm/CompVis-named state dict.

The same inference serves the full SD1.5 UNet of the TinyBreaker file and the tiny random UNets of the tests.
What shapes cannot tell (the number of attention heads, the GroupNorm group count) takes SD1's values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import ModelFileError
from ..files.state_dict import shape_of

SD1_NUM_HEADS = 8  # SD1's v1-inference.yaml: num_heads 8 at every level (diffusers calls it attention_head_dim)
EXPECTED_UNET = "an SD1 UNet with ldm names (input_blocks.*, middle_block.*, output_blocks.*)"

_BLOCK_INDEX = re.compile(r"^input_blocks\.(\d+)\.")
_TRANSFORMER_INDEX = re.compile(r"^middle_block\.1\.transformer_blocks\.(\d+)\.")


@dataclass(frozen=True)
class SD1UNetConfig:
    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]  # levels (0 = full resolution) whose blocks carry a spatial transformer
    transformer_depth: int
    context_dim: int
    num_heads: int = SD1_NUM_HEADS
    use_linear_projection: bool = False  # SD1: proj_in/proj_out are 1x1 convolutions

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * mult for mult in self.channel_mult)

    def to_diffusers(self) -> dict:
        """Keyword arguments for ``diffusers.UNet2DConditionModel`` (``convert_ldm_unet_checkpoint`` reads them too)."""
        levels = range(len(self.channel_mult))
        down = ["CrossAttnDownBlock2D" if level in self.attention_levels else "DownBlock2D" for level in levels]
        up = ["CrossAttnUpBlock2D" if level in self.attention_levels else "UpBlock2D" for level in reversed(levels)]
        return {
            "sample_size": 64,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.num_res_blocks,
            "cross_attention_dim": self.context_dim,
            "attention_head_dim": self.num_heads,
            "transformer_layers_per_block": self.transformer_depth,
            "use_linear_projection": self.use_linear_projection,
        }


def infer_sd1_unet_config(state_dict: Mapping[str, torch.Tensor], *, num_heads: int = SD1_NUM_HEADS,
                          source: str = "<state dict>") -> SD1UNetConfig:
    """The UNet layout read from shapes: channels, levels, res-blocks per level, attention levels, context width."""
    keys = set(state_dict.keys())

    def require(key: str) -> tuple[int, ...]:
        if key not in keys:
            raise ModelFileError(source, f"missing tensor '{key}'", EXPECTED_UNET)
        return shape_of(state_dict, key)

    model_channels, in_channels = require("input_blocks.0.0.weight")[:2]
    out_channels = require("out.2.weight")[0]
    require("middle_block.1.proj_in.weight")

    input_block_count = 1 + max(int(m.group(1)) for m in map(_BLOCK_INDEX.match, keys) if m)
    downsample_count = sum(f"input_blocks.{i}.0.op.weight" in keys for i in range(input_block_count))
    levels = downsample_count + 1
    num_res_blocks, remainder = divmod(input_block_count - 1 - downsample_count, levels)
    if num_res_blocks < 1 or remainder:
        raise ModelFileError(source, f"{input_block_count} input blocks do not form a UNet", EXPECTED_UNET)

    channel_mult, attention_levels = [], []
    for level in range(levels):
        first_block = 1 + level * (num_res_blocks + 1)
        channels = require(f"input_blocks.{first_block}.0.out_layers.3.weight")[0]
        if channels % model_channels:
            raise ModelFileError(source, f"level {level} has {channels} channels, not a multiple of {model_channels}",
                                 EXPECTED_UNET)
        if channels % num_heads:
            raise ModelFileError(source, f"level {level} has {channels} channels, not divisible by {num_heads} heads",
                                 EXPECTED_UNET)
        channel_mult.append(channels // model_channels)
        if f"input_blocks.{first_block}.1.proj_in.weight" in keys:
            attention_levels.append(level)

    context_dim = require("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1]
    depth = 1 + max(int(m.group(1)) for m in map(_TRANSFORMER_INDEX.match, keys) if m)
    linear_projection = len(require("middle_block.1.proj_in.weight")) == 2
    return SD1UNetConfig(
        in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
        channel_mult=tuple(channel_mult), num_res_blocks=num_res_blocks, attention_levels=tuple(attention_levels),
        transformer_depth=depth, context_dim=context_dim, num_heads=num_heads,
        use_linear_projection=linear_projection,
    )

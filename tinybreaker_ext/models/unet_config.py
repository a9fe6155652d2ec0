"""Infers the configuration of an SD1 or SDXL UNet from the tensor shapes of its ldm/CompVis-named state dict.
What shapes cannot tell takes the family's values: SD1 has 8 heads at every level; SDXL (recognised by
``label_emb``, its pooled-text + size conditioning) has 64-channel heads and 256 sinusoid features per size/crop
number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import ModelFileError
from ..files.state_dict import shape_of

SD1_NUM_HEADS = 8  # SD1's v1-inference.yaml: num_heads 8 at every level (diffusers calls it attention_head_dim)
SDXL_HEAD_CHANNELS = 64  # SDXL's sd_xl_base.yaml: num_head_channels 64
SDXL_TIME_ID_DIM = 256  # SDXL: addition_time_embed_dim; label_emb's input is pooled text + 6 x 256
SDXL_ADM_KEY = "label_emb.0.0.weight"
EXPECTED_UNET = "an SD1 or SDXL UNet with ldm names (input_blocks.*, middle_block.*, output_blocks.*)"

_BLOCK_INDEX = re.compile(r"^input_blocks\.(\d+)\.")
_TRANSFORMER_INDEX = re.compile(r"^middle_block\.1\.transformer_blocks\.(\d+)\.")


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]  # levels (0 = full resolution) whose blocks carry a spatial transformer
    transformer_depth: int  # the middle block's
    context_dim: int
    num_heads: int = SD1_NUM_HEADS  # heads per level, unless head_channels is set
    use_linear_projection: bool = False  # SD1: proj_in/proj_out are 1x1 convolutions; SDXL: linear
    level_depths: tuple[int, ...] = ()  # transformer depth per level (empty: transformer_depth everywhere)
    head_channels: int | None = None  # SDXL: heads = channels / 64 at each level
    adm_in_channels: int | None = None  # SDXL: label_emb's input width (pooled text + 6 time ids)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * mult for mult in self.channel_mult)

    def heads(self) -> list[int]:
        if self.head_channels is None:
            return [self.num_heads] * len(self.channel_mult)
        return [max(1, channels // self.head_channels) for channels in self.block_out_channels]

    def to_diffusers(self) -> dict:
        """Keyword arguments for ``diffusers.UNet2DConditionModel`` (``convert_ldm_unet_checkpoint`` reads them too)."""
        levels = range(len(self.channel_mult))
        down = ["CrossAttnDownBlock2D" if level in self.attention_levels else "DownBlock2D" for level in levels]
        up = ["CrossAttnUpBlock2D" if level in self.attention_levels else "UpBlock2D" for level in reversed(levels)]
        heads = self.heads()
        config = {
            "sample_size": 64,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.num_res_blocks,
            "cross_attention_dim": self.context_dim,
            "attention_head_dim": heads[0] if len(set(heads)) == 1 else heads,
            "transformer_layers_per_block": list(self.level_depths) or self.transformer_depth,
            "use_linear_projection": self.use_linear_projection,
        }
        if self.adm_in_channels is not None:
            config.update(addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_ID_DIM,
                          projection_class_embeddings_input_dim=self.adm_in_channels)
        return config


def infer_unet_config(state_dict: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> UNetConfig:
    keys = set(state_dict.keys())

    def require(key: str) -> tuple[int, ...]:
        if key not in keys:
            raise ModelFileError(source, f"missing tensor '{key}'", EXPECTED_UNET)
        return shape_of(state_dict, key)

    model_channels, in_channels = require("input_blocks.0.0.weight")[:2]
    out_channels = require("out.2.weight")[0]
    require("middle_block.1.proj_in.weight")
    sdxl = SDXL_ADM_KEY in keys
    head_channels = SDXL_HEAD_CHANNELS if sdxl else None

    input_block_count = 1 + max(int(m.group(1)) for m in map(_BLOCK_INDEX.match, keys) if m)
    downsample_count = sum(f"input_blocks.{i}.0.op.weight" in keys for i in range(input_block_count))
    levels = downsample_count + 1
    num_res_blocks, remainder = divmod(input_block_count - 1 - downsample_count, levels)
    if num_res_blocks < 1 or remainder:
        raise ModelFileError(source, f"{input_block_count} input blocks do not form a UNet", EXPECTED_UNET)

    depth = 1 + max(int(m.group(1)) for m in map(_TRANSFORMER_INDEX.match, keys) if m)
    channel_mult, attention_levels, level_depths = [], [], []
    for level in range(levels):
        first_block = 1 + level * (num_res_blocks + 1)
        channel_mult.append(require(f"input_blocks.{first_block}.0.out_layers.3.weight")[0] // model_channels)
        blocks = re.compile(rf"^input_blocks\.{first_block}\.1\.transformer_blocks\.(\d+)\.")
        found = [int(m.group(1)) for m in map(blocks.match, keys) if m]
        if found:
            attention_levels.append(level)
        level_depths.append(1 + max(found) if found else depth)

    context_dim = require("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1]
    linear_projection = len(require("middle_block.1.proj_in.weight")) == 2
    return UNetConfig(
        in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
        channel_mult=tuple(channel_mult), num_res_blocks=num_res_blocks, attention_levels=tuple(attention_levels),
        transformer_depth=depth, context_dim=context_dim, use_linear_projection=linear_projection,
        level_depths=tuple(level_depths) if len(set(level_depths)) > 1 else (),
        head_channels=head_channels, adm_in_channels=require(SDXL_ADM_KEY)[1] if sdxl else None,
    )

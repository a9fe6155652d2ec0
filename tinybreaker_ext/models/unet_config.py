"""Infers the configuration of an SD1 or SDXL UNet from the tensor shapes of its ldm/CompVis-named state dict.
What shapes cannot tell takes the family's values: SD1 has 8 heads at every level; SDXL (recognised by
``label_emb``, its pooled-text + size conditioning) has 64-channel heads and 256 sinusoid features per size/crop
number."""

from __future__ import annotations

import re
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


def infer_unet_config(state_dict: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> dict:
    """Keyword arguments for ``diffusers.UNet2DConditionModel`` (``convert_ldm_unet_checkpoint`` reads them too)."""
    keys = set(state_dict.keys())

    def require(key: str) -> tuple[int, ...]:
        if key not in keys:
            raise ModelFileError(source, f"missing tensor '{key}'", EXPECTED_UNET)
        return shape_of(state_dict, key)

    in_channels = require("input_blocks.0.0.weight")[1]
    out_channels = require("out.2.weight")[0]
    linear_projection = len(require("middle_block.1.proj_in.weight")) == 2  # SD1: 1x1 convolutions; SDXL: linear
    input_block_count = 1 + max(int(m.group(1)) for m in map(_BLOCK_INDEX.match, keys) if m)
    downsample_count = sum(f"input_blocks.{i}.0.op.weight" in keys for i in range(input_block_count))
    levels = downsample_count + 1
    num_res_blocks, remainder = divmod(input_block_count - 1 - downsample_count, levels)
    if num_res_blocks < 1 or remainder:
        raise ModelFileError(source, f"{input_block_count} input blocks do not form a UNet", EXPECTED_UNET)

    middle_depth = 1 + max(int(m.group(1)) for m in map(_TRANSFORMER_INDEX.match, keys) if m)
    block_out_channels, attention_levels, level_depths = [], [], []
    for level in range(levels):  # level 0 = full resolution
        first_block = 1 + level * (num_res_blocks + 1)
        block_out_channels.append(require(f"input_blocks.{first_block}.0.out_layers.3.weight")[0])
        blocks = re.compile(rf"^input_blocks\.{first_block}\.1\.transformer_blocks\.(\d+)\.")
        found = [int(m.group(1)) for m in map(blocks.match, keys) if m]
        if found:
            attention_levels.append(level)
        level_depths.append(1 + max(found) if found else middle_depth)

    sdxl = SDXL_ADM_KEY in keys
    heads = [max(1, channels // SDXL_HEAD_CHANNELS) if sdxl else SD1_NUM_HEADS for channels in block_out_channels]
    config = {
        "sample_size": 64,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "down_block_types": ["CrossAttnDownBlock2D" if level in attention_levels else "DownBlock2D"
                             for level in range(levels)],
        "up_block_types": ["CrossAttnUpBlock2D" if level in attention_levels else "UpBlock2D"
                           for level in reversed(range(levels))],
        "block_out_channels": block_out_channels,
        "layers_per_block": num_res_blocks,
        "cross_attention_dim": require("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1],
        "attention_head_dim": heads[0] if len(set(heads)) == 1 else heads,  # diffusers' name for the head count
        "transformer_layers_per_block": level_depths if len(set(level_depths)) > 1 else middle_depth,
        "use_linear_projection": linear_projection,
    }
    if sdxl:
        config.update(addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_ID_DIM,
                      projection_class_embeddings_input_dim=require(SDXL_ADM_KEY)[1])
    return config

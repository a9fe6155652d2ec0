"""PixArt-Sigma key layouts: which keys of a native or diffusers file hold each native tensor (docs/model-files.md
"PixArt-Sigma layouts")."""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import ModelFileError
from ..files.classify import PIXART_DIFFUSERS as DIFFUSERS
from ..files.classify import PIXART_NATIVE as NATIVE
from ..files.classify import PIXART_SIGNATURES, pixart_layout
from ..files.state_dict import source_name

# Unused by inference: the learned null caption (never substituted) and a stored position embedding (computed)
IGNORED_KEYS = {
    NATIVE: ("y_embedder.y_embedding", "pos_embed"),
    DIFFUSERS: ("caption_projection.y_embedding", "pos_embed.pos_embed"),
}

BLOCK_PREFIX = {NATIVE: "blocks.", DIFFUSERS: "transformer_blocks."}

# native module path -> diffusers module path, outside the blocks
_DIFFUSERS_TOP_MODULES = {
    "x_embedder.proj": "pos_embed.proj",
    "y_embedder.y_proj.fc1": "caption_projection.linear_1",
    "y_embedder.y_proj.fc2": "caption_projection.linear_2",
    "t_embedder.mlp.0": "adaln_single.emb.timestep_embedder.linear_1",
    "t_embedder.mlp.2": "adaln_single.emb.timestep_embedder.linear_2",
    "t_block.1": "adaln_single.linear",
    "final_layer.linear": "proj_out",
}
# native module path inside a block -> diffusers module paths whose tensors are concatenated along dim 0
_DIFFUSERS_BLOCK_MODULES = {
    "attn.qkv": ("attn1.to_q", "attn1.to_k", "attn1.to_v"),
    "attn.proj": ("attn1.to_out.0",),
    "cross_attn.q_linear": ("attn2.to_q",),
    "cross_attn.kv_linear": ("attn2.to_k", "attn2.to_v"),
    "cross_attn.proj": ("attn2.to_out.0",),
    "mlp.fc1": ("ff.net.0.proj",),
    "mlp.fc2": ("ff.net.2",),
}
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def full_key_name(state_dict: Mapping[str, torch.Tensor], key: str) -> str:
    """The key as stored in the file (a prefixed lazy view strips e.g. ``base.diffusion_model.``)."""
    return f"{getattr(state_dict, 'prefix', '') or ''}{key}"


def detect_pixart_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    layout = pixart_layout(set(state_dict.keys()))
    if layout is None:
        raise ModelFileError(source_name(state_dict), "not a PixArt-Sigma transformer (signature keys not found)",
                             expected=" or ".join(" + ".join(sig) for sig in PIXART_SIGNATURES.values()))
    return layout


def pixart_block_count(state_dict: Mapping[str, torch.Tensor], layout: str) -> int:
    """1 + the highest block index present (0 when there are no blocks)."""
    block = re.compile(rf"^{re.escape(BLOCK_PREFIX[layout])}(\d+)\.")
    return 1 + max((int(m.group(1)) for m in map(block.match, state_dict.keys()) if m), default=-1)


def source_keys(native_key: str, layout: str) -> tuple[str, ...]:
    """The key(s) of ``layout`` that hold the native tensor (several when they are concatenated along dim 0)."""
    if layout == NATIVE:
        return (native_key,)
    if native_key == "final_layer.scale_shift_table":
        return ("scale_shift_table",)
    module, _, param = native_key.rpartition(".")
    if module in _DIFFUSERS_TOP_MODULES:
        return (f"{_DIFFUSERS_TOP_MODULES[module]}.{param}",)
    index, rest = _BLOCK_KEY.match(native_key).groups()
    if rest == "scale_shift_table":
        return (f"transformer_blocks.{index}.scale_shift_table",)
    rest_module, _, rest_param = rest.rpartition(".")
    return tuple(f"transformer_blocks.{index}.{name}.{rest_param}" for name in _DIFFUSERS_BLOCK_MODULES[rest_module])

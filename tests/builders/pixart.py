"""Tiny (or, on the ``meta`` device, full-size) PixArt-Sigma state dicts with the real key names and shapes.

Native names follow docs/model-files.md "PixArt-Sigma layouts"; the diffusers layout is produced here independently
of the loader by splitting the fused tensors, so the same seed gives the same weights in both layouts.
"""

from __future__ import annotations

import math

import torch

FULL_SIZE = dict(hidden=1152, depth=28, caption_dim=4096)  # PixArt-Sigma-XL-2-1024-MS
NULL_CAPTION_TOKENS = 300


def _native_shapes(hidden: int, depth: int, caption_dim: int, patch: int, in_channels: int) -> dict[str, tuple]:
    out = patch * patch * 2 * in_channels  # learned sigma: twice the input channels
    shapes = {
        "x_embedder.proj.weight": (hidden, in_channels, patch, patch), "x_embedder.proj.bias": (hidden,),
        "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
        "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
        "t_block.1.weight": (6 * hidden, hidden), "t_block.1.bias": (6 * hidden,),
        "y_embedder.y_proj.fc1.weight": (hidden, caption_dim), "y_embedder.y_proj.fc1.bias": (hidden,),
        "y_embedder.y_proj.fc2.weight": (hidden, hidden), "y_embedder.y_proj.fc2.bias": (hidden,),
    }
    for n in range(depth):
        shapes.update({
            f"blocks.{n}.scale_shift_table": (6, hidden),
            f"blocks.{n}.attn.qkv.weight": (3 * hidden, hidden), f"blocks.{n}.attn.qkv.bias": (3 * hidden,),
            f"blocks.{n}.attn.proj.weight": (hidden, hidden), f"blocks.{n}.attn.proj.bias": (hidden,),
            f"blocks.{n}.cross_attn.q_linear.weight": (hidden, hidden),
            f"blocks.{n}.cross_attn.q_linear.bias": (hidden,),
            f"blocks.{n}.cross_attn.kv_linear.weight": (2 * hidden, hidden),
            f"blocks.{n}.cross_attn.kv_linear.bias": (2 * hidden,),
            f"blocks.{n}.cross_attn.proj.weight": (hidden, hidden), f"blocks.{n}.cross_attn.proj.bias": (hidden,),
            f"blocks.{n}.mlp.fc1.weight": (4 * hidden, hidden), f"blocks.{n}.mlp.fc1.bias": (4 * hidden,),
            f"blocks.{n}.mlp.fc2.weight": (hidden, 4 * hidden), f"blocks.{n}.mlp.fc2.bias": (hidden,),
        })
    shapes.update({
        "final_layer.scale_shift_table": (2, hidden),
        "final_layer.linear.weight": (out, hidden), "final_layer.linear.bias": (out,),
    })
    return shapes


def _std(key: str, shape: tuple) -> float:
    """Scales that keep activations O(1) through the tiny model, with tables large enough that adaLN matters."""
    if key.endswith("scale_shift_table"):
        return 0.5
    if key.endswith(".bias"):
        return 0.1
    fan_in = math.prod(shape[1:])
    return 1.0 / math.sqrt(fan_in)


def _to_diffusers(native: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    top = {
        "x_embedder.proj": "pos_embed.proj",
        "y_embedder.y_proj.fc1": "caption_projection.linear_1",
        "y_embedder.y_proj.fc2": "caption_projection.linear_2",
        "t_embedder.mlp.0": "adaln_single.emb.timestep_embedder.linear_1",
        "t_embedder.mlp.2": "adaln_single.emb.timestep_embedder.linear_2",
        "t_block.1": "adaln_single.linear",
        "final_layer.linear": "proj_out",
    }
    block = {
        "attn.qkv": ["attn1.to_q", "attn1.to_k", "attn1.to_v"],
        "attn.proj": ["attn1.to_out.0"],
        "cross_attn.q_linear": ["attn2.to_q"],
        "cross_attn.kv_linear": ["attn2.to_k", "attn2.to_v"],
        "cross_attn.proj": ["attn2.to_out.0"],
        "mlp.fc1": ["ff.net.0.proj"],
        "mlp.fc2": ["ff.net.2"],
    }
    out: dict[str, torch.Tensor] = {"scale_shift_table": native["final_layer.scale_shift_table"]}
    for name, target in top.items():
        for param in ("weight", "bias"):
            out[f"{target}.{param}"] = native[f"{name}.{param}"]
    for n in range(depth):
        out[f"transformer_blocks.{n}.scale_shift_table"] = native[f"blocks.{n}.scale_shift_table"]
        for name, targets in block.items():
            for param in ("weight", "bias"):
                parts = native[f"blocks.{n}.{name}.{param}"].chunk(len(targets), dim=0)
                for target, part in zip(targets, parts):
                    out[f"transformer_blocks.{n}.{target}.{param}"] = part.clone()
    if "y_embedder.y_embedding" in native:
        out["caption_projection.y_embedding"] = native["y_embedder.y_embedding"]
    if "pos_embed" in native:
        out["pos_embed.pos_embed"] = native["pos_embed"]
    return out


def pixart_state_dict(*, hidden: int = 144, depth: int = 2, caption_dim: int = 32, patch: int = 2,
                      in_channels: int = 4, layout: str = "native", include_y_embedding: bool = False,
                      include_pos_embed: bool = False, dtype: torch.dtype = torch.float32, seed: int = 0,
                      device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A PixArt-Sigma transformer state dict. ``device="meta"`` gives shapes only (use it for full-size layouts)."""
    if layout not in ("native", "diffusers"):
        raise ValueError(f"layout must be 'native' or 'diffusers', got {layout!r}")
    shapes = _native_shapes(hidden, depth, caption_dim, patch, in_channels)
    if include_y_embedding:
        shapes["y_embedder.y_embedding"] = (NULL_CAPTION_TOKENS, caption_dim)
    if include_pos_embed:
        shapes["pos_embed"] = (1, 64 * 64, hidden)  # the 1024 model's stored 64×64 token grid
    if torch.device(device).type == "meta":
        native = {key: torch.empty(shape, dtype=dtype, device="meta") for key, shape in shapes.items()}
    else:
        generator = torch.Generator().manual_seed(seed)
        native = {key: (torch.randn(shape, generator=generator) * _std(key, shape)).to(device=device, dtype=dtype)
                  for key, shape in shapes.items()}
    return native if layout == "native" else _to_diffusers(native, depth)

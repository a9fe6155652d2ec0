"""Tiny (or, on the ``meta`` device, full-size) PixArt-Sigma state dicts with the real key names and shapes.

Native names follow docs/model-files.md "PixArt-Sigma layouts"; the diffusers layout is produced from them with
diffusers' own conversion written out below (not the loader's table), so the same seed gives the same weights in both
layouts and a wrong loader mapping shows.
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


# Every assignment of diffusers' own conversion (scripts/convert_pixart_sigma_to_diffusers.py in the diffusers
# repository, which turns an original PixArt-Sigma checkpoint into diffusers names), read backwards and written out one
# parameter a row: diffusers name <- native name, and which of how many equal dim-0 chunks of it (fused q/k/v).
# Written here from that script, not from tinybreaker_ext/models/pixart_keys.py, so that a wrong mapping there makes
# the loader's diffusers path disagree with its native path (tests/test_pixart_keys.py).
_FROM_CONVERSION_SCRIPT_TOP = (
    ("pos_embed.proj.weight", "x_embedder.proj.weight", 0, 1),
    ("pos_embed.proj.bias", "x_embedder.proj.bias", 0, 1),
    ("caption_projection.linear_1.weight", "y_embedder.y_proj.fc1.weight", 0, 1),
    ("caption_projection.linear_1.bias", "y_embedder.y_proj.fc1.bias", 0, 1),
    ("caption_projection.linear_2.weight", "y_embedder.y_proj.fc2.weight", 0, 1),
    ("caption_projection.linear_2.bias", "y_embedder.y_proj.fc2.bias", 0, 1),
    ("adaln_single.emb.timestep_embedder.linear_1.weight", "t_embedder.mlp.0.weight", 0, 1),
    ("adaln_single.emb.timestep_embedder.linear_1.bias", "t_embedder.mlp.0.bias", 0, 1),
    ("adaln_single.emb.timestep_embedder.linear_2.weight", "t_embedder.mlp.2.weight", 0, 1),
    ("adaln_single.emb.timestep_embedder.linear_2.bias", "t_embedder.mlp.2.bias", 0, 1),
    ("adaln_single.linear.weight", "t_block.1.weight", 0, 1),
    ("adaln_single.linear.bias", "t_block.1.bias", 0, 1),
    ("proj_out.weight", "final_layer.linear.weight", 0, 1),
    ("proj_out.bias", "final_layer.linear.bias", 0, 1),
    ("scale_shift_table", "final_layer.scale_shift_table", 0, 1),
)
_FROM_CONVERSION_SCRIPT_BLOCK = (  # under transformer_blocks.{n}. <- blocks.{n}.
    ("scale_shift_table", "scale_shift_table", 0, 1),
    ("attn1.to_q.weight", "attn.qkv.weight", 0, 3), ("attn1.to_q.bias", "attn.qkv.bias", 0, 3),
    ("attn1.to_k.weight", "attn.qkv.weight", 1, 3), ("attn1.to_k.bias", "attn.qkv.bias", 1, 3),
    ("attn1.to_v.weight", "attn.qkv.weight", 2, 3), ("attn1.to_v.bias", "attn.qkv.bias", 2, 3),
    ("attn1.to_out.0.weight", "attn.proj.weight", 0, 1), ("attn1.to_out.0.bias", "attn.proj.bias", 0, 1),
    ("ff.net.0.proj.weight", "mlp.fc1.weight", 0, 1), ("ff.net.0.proj.bias", "mlp.fc1.bias", 0, 1),
    ("ff.net.2.weight", "mlp.fc2.weight", 0, 1), ("ff.net.2.bias", "mlp.fc2.bias", 0, 1),
    ("attn2.to_q.weight", "cross_attn.q_linear.weight", 0, 1), ("attn2.to_q.bias", "cross_attn.q_linear.bias", 0, 1),
    ("attn2.to_k.weight", "cross_attn.kv_linear.weight", 0, 2), ("attn2.to_k.bias", "cross_attn.kv_linear.bias", 0, 2),
    ("attn2.to_v.weight", "cross_attn.kv_linear.weight", 1, 2), ("attn2.to_v.bias", "cross_attn.kv_linear.bias", 1, 2),
    ("attn2.to_out.0.weight", "cross_attn.proj.weight", 0, 1), ("attn2.to_out.0.bias", "cross_attn.proj.bias", 0, 1),
)
# Kept by the diffusers model too, though the script drops them (inference does not use them).
_UNUSED_BUFFERS = (("caption_projection.y_embedding", "y_embedder.y_embedding"), ("pos_embed.pos_embed", "pos_embed"))


def _to_diffusers(native: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    rows = list(_FROM_CONVERSION_SCRIPT_TOP) + [
        (f"transformer_blocks.{n}.{target}", f"blocks.{n}.{source}", part, parts)
        for n in range(depth) for target, source, part, parts in _FROM_CONVERSION_SCRIPT_BLOCK]
    out = {target: native[source].chunk(parts, dim=0)[part].clone() for target, source, part, parts in rows}
    out.update({target: native[source] for target, source in _UNUSED_BUFFERS if source in native})
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

"""PixArt-Sigma key layouts: read a native or diffusers file under native names (docs/model-files.md
"PixArt-Sigma layouts"). A diffusers tensor is built when asked for, one at a time (self-attention q/k/v and
cross-attention k/v are concatenated along dim 0).
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Iterator, Mapping

import torch

from ..errors import ModelFileError
from ..files.classify import PIXART_DIFFUSERS as DIFFUSERS
from ..files.classify import PIXART_NATIVE as NATIVE
from ..files.classify import PIXART_SIGNATURES, pixart_layout
from ..files.state_dict import shape_of, source_name

logger = logging.getLogger(__name__)

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


def native_pixart_keys(depth: int) -> list[str]:
    """Every parameter name of a native PixArt-Sigma transformer with ``depth`` blocks."""
    top = ["x_embedder.proj", "t_embedder.mlp.0", "t_embedder.mlp.2", "t_block.1",
           "y_embedder.y_proj.fc1", "y_embedder.y_proj.fc2"]
    keys = [f"{module}.{param}" for module in top for param in ("weight", "bias")]
    for index in range(depth):
        keys.append(f"blocks.{index}.scale_shift_table")
        keys += [f"blocks.{index}.{module}.{param}"
                 for module in _DIFFUSERS_BLOCK_MODULES for param in ("weight", "bias")]
    keys += ["final_layer.scale_shift_table", "final_layer.linear.weight", "final_layer.linear.bias"]
    return keys


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


def source_shape(state_dict: Mapping[str, torch.Tensor], native_key: str, layout: str) -> tuple[int, ...]:
    """Shape the native tensor will have, read from the file's shapes without loading tensors."""
    shapes = [shape_of(state_dict, key) for key in source_keys(native_key, layout)]
    return (sum(shape[0] for shape in shapes),) + tuple(shapes[0][1:])


def raise_if_missing(state_dict: Mapping[str, torch.Tensor], layout: str, native_keys: Iterable[str]) -> None:
    present = set(state_dict.keys())
    missing = [key for native in native_keys for key in source_keys(native, layout) if key not in present]
    if missing:
        shown = ", ".join(full_key_name(state_dict, key) for key in missing[:3])
        if len(missing) > 3:
            shown += f" and {len(missing) - 3} more"
        raise ModelFileError(source_name(state_dict), f"PixArt-Sigma transformer is missing {shown}",
                             expected=f"complete {layout} PixArt-Sigma layout")


def log_unused(state_dict: Mapping[str, torch.Tensor], layout: str, depth: int) -> None:
    """Keys that are neither model parameters nor known-ignorable are logged; loading skips them."""
    used = {key for native in native_pixart_keys(depth) for key in source_keys(native, layout)}
    used.update(IGNORED_KEYS[layout])
    unused = sorted(key for key in state_dict.keys() if key not in used)
    if unused:
        logger.warning("%s: ignoring %d unknown PixArt key(s): %s", source_name(state_dict), len(unused),
                       ", ".join(full_key_name(state_dict, key) for key in unused[:5])
                       + (" ..." if len(unused) > 5 else ""))


def iter_native_tensors(state_dict: Mapping[str, torch.Tensor], layout: str,
                        native_keys: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(native_key, tensor)`` one at a time, reading each source tensor only when it is needed."""
    for native in native_keys:
        sources = source_keys(native, layout)
        yield native, state_dict[sources[0]] if len(sources) == 1 else torch.cat([state_dict[k] for k in sources])

"""llama.cpp's T5 tensor names (city96's ``t5-v1_1-xxl-encoder-*.gguf``, architecture ``t5encoder``) as the HF
``T5EncoderModel`` keys the rest of TinyBreaker uses (docs/model-files.md "GGUF T5 files").

The names are those of llama.cpp's ``convert_hf_to_gguf.py`` for ``T5EncoderModel`` (gguf's ``MODEL_TENSOR.ENC_*``).
"""

from __future__ import annotations

import re

GGUF_T5_SIGNATURE = ("enc.blk.0.attn_q.weight", "token_embd.weight")
_WHOLE_NAMES = {"token_embd.weight": "shared.weight", "enc.output_norm.weight": "encoder.final_layer_norm.weight"}
_BLOCK_PARTS = {
    "attn_q": "layer.0.SelfAttention.q",
    "attn_k": "layer.0.SelfAttention.k",
    "attn_v": "layer.0.SelfAttention.v",
    "attn_o": "layer.0.SelfAttention.o",
    "attn_norm": "layer.0.layer_norm",
    "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
    "ffn_gate": "layer.1.DenseReluDense.wi_0",
    "ffn_up": "layer.1.DenseReluDense.wi_1",
    "ffn_down": "layer.1.DenseReluDense.wo",
    "ffn_norm": "layer.1.layer_norm",
}
_BLOCK_NAME = re.compile(r"^enc\.blk\.(\d+)\.(\w+)\.(weight|bias)$")


def _hf_t5_name(name: str, gated: bool) -> str:
    """The HF key of a llama.cpp T5 tensor name (no prefix); names of other tensors come back unchanged."""
    match = _BLOCK_NAME.match(name)
    if match is None or match.group(2) not in _BLOCK_PARTS:
        return _WHOLE_NAMES.get(name, name)
    part = _BLOCK_PARTS[match.group(2)]
    if match.group(2) == "ffn_up" and not gated:
        part = "layer.1.DenseReluDense.wi"
    return f"encoder.block.{match.group(1)}.{part}.{match.group(3)}"


def gguf_t5_prefix(names) -> str | None:
    """The prefix under which a GGUF file holds a llama.cpp T5 encoder, else None."""
    from .classify import find_signature_prefix

    return find_signature_prefix(names, *GGUF_T5_SIGNATURE)


def hf_t5_names(names) -> dict[str, str]:
    """HF key (without the outer prefix, e.g. of all-in-one files) → GGUF name, for the tensors under the T5
    encoder's prefix."""
    prefix = gguf_t5_prefix(names) or ""
    gated = prefix + "enc.blk.0.ffn_gate.weight" in names
    return {_hf_t5_name(name[len(prefix):], gated): name for name in names if name.startswith(prefix)}

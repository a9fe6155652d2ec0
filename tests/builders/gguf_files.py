"""GGUF T5 encoders in the layout of city96's ``t5-v1_1-xxl-encoder-*.gguf`` files, written with the ``gguf`` writer.

city96 converted transformers' ``T5EncoderModel`` with llama.cpp's ``convert_hf_to_gguf.py`` and quantized it with
``llama-quantize`` (ComfyUI-GGUF #215). So the files have architecture ``t5encoder``, llama.cpp's tensor names
(written here from gguf's own ``MODEL_TENSOR`` table, independently of the product's reader), 1-D norms in F32, the
relative attention bias as the converter wrote it (F16, F32 in an F32 file: llama-quantize leaves ``attn_rel_b``
alone), the matrices in the quantization of the file type (k-quant mixes raise ``attn_v``/``ffn_down`` of some
blocks, as llama.cpp's ``use_more_bits`` does), and the metadata below (a dump of the real Q8_0 file:
llama-cpp-python #1717).

Quantizers: gguf's own for F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1; plain round-to-nearest ones written here for the
k-quants, which the gguf package only dequantizes (llama.cpp's search for the best scales is not reproduced, so the
error of these k-quant files is a little above the real files').
Usable outside pytest (benchmarks import it too).
"""

from __future__ import annotations

import os

import numpy as np
import torch

GGUF_ARCH = "t5encoder"
_BLOCK_TENSORS = {  # HF part → gguf MODEL_TENSOR member
    "layer.0.SelfAttention.q": "ENC_ATTN_Q", "layer.0.SelfAttention.k": "ENC_ATTN_K",
    "layer.0.SelfAttention.v": "ENC_ATTN_V", "layer.0.SelfAttention.o": "ENC_ATTN_OUT",
    "layer.0.layer_norm": "ENC_ATTN_NORM", "layer.0.SelfAttention.relative_attention_bias": "ENC_ATTN_REL_B",
    "layer.1.DenseReluDense.wi_0": "ENC_FFN_GATE", "layer.1.DenseReluDense.wi_1": "ENC_FFN_UP",
    "layer.1.DenseReluDense.wi": "ENC_FFN_UP", "layer.1.DenseReluDense.wo": "ENC_FFN_DOWN",
    "layer.1.layer_norm": "ENC_FFN_NORM",
}


def gguf_name(hf_key: str) -> str:
    """llama.cpp's name of an HF T5 encoder key, from gguf's ``TENSOR_NAMES`` table."""
    import gguf

    names = gguf.TENSOR_NAMES
    if hf_key in ("shared.weight", "encoder.embed_tokens.weight"):
        return names[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight"
    if hf_key == "encoder.final_layer_norm.weight":
        return names[gguf.MODEL_TENSOR.ENC_OUTPUT_NORM] + ".weight"
    _encoder, _block, index, rest = hf_key.split(".", 3)
    part = rest[: -len(".weight")]
    return names[getattr(gguf.MODEL_TENSOR, _BLOCK_TENSORS[part])].format(bid=int(index)) + ".weight"


# --- k-quant quantizers (round to nearest; layouts as ggml-common.h, checked against gguf's dequantizers) --------

def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _pack_k_scales(sc: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins per super-block into ggml's 12 bytes (the inverse of ``get_scale_min``)."""
    sc, mins = sc.astype(np.uint8), mins.astype(np.uint8)
    low = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    mid = mins[:, :4] | ((mins[:, 4:] >> 4) << 6)
    high = (sc[:, 4:] & 0x0F) | ((mins[:, 4:] & 0x0F) << 4)
    return np.concatenate([low, mid, high], axis=1)


def _affine_k(blocks: np.ndarray, levels: int):
    """Scales and mins (6-bit, per 32 values) and the codes 0..levels of an affine k-quant (Q4_K, Q5_K)."""
    sub = blocks.reshape(-1, 8, 32)
    low = np.minimum(sub.min(axis=-1), 0)  # ggml keeps the min at or below zero
    span = np.maximum(sub.max(axis=-1) - low, 1e-12)
    scale, offset = span / levels, -low
    d = scale.max(axis=-1, keepdims=True) / 63
    dmin = offset.max(axis=-1, keepdims=True) / 63
    d16, dmin16 = d.astype(np.float16).astype(np.float32), dmin.astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d16 == 0, 1, d16)), 1, 63)
    mins = np.clip(np.rint(offset / np.where(dmin16 == 0, 1, dmin16)), 0, 63)
    step = (d16 * sc)[..., None]
    q = np.clip(np.rint((sub + (dmin16 * mins)[..., None]) / step), 0, levels).astype(np.uint8)
    return d16, dmin16, sc, mins, q


def quantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    d, dmin, sc, mins, q = _affine_k(blocks, 15)
    n = blocks.shape[0]
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, 128)  # byte group g: sub-block 2g low, 2g+1 high
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, mins), qs], axis=1)


def quantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    d, dmin, sc, mins, q = _affine_k(blocks, 31)
    n = blocks.shape[0]
    low = q & 0x0F
    qs = (low[:, 0::2] | (low[:, 1::2] << 4)).reshape(n, 128)
    qh = np.zeros((n, 32), dtype=np.uint8)
    for sub in range(8):  # bit ``sub`` of byte k: the fifth bit of value k of sub-block ``sub``
        qh |= (q[:, sub] >> 4) << sub
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, mins), qh, qs], axis=1)


def quantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    sub = blocks.reshape(n, 16, 16)
    scale = np.abs(sub).max(axis=-1) / 31
    d = (np.abs(scale).max(axis=-1, keepdims=True) / 127).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d == 0, 1, d)), -128, 127)
    step = (d * np.where(sc == 0, 1, sc))[..., None]
    q = (np.clip(np.rint(sub / step), -32, 31) + 32).astype(np.uint8).reshape(n, 256)
    halves = q.reshape(n, 2, 128)
    ql = (halves[:, :, :64] & 0x0F) | ((halves[:, :, 64:] & 0x0F) << 4)  # value h*128 + s*64 + k → byte h*64 + k
    high = (halves >> 4).reshape(n, 2, 4, 32)  # value h*128 + t*32 + k → byte h*32 + k, bits 2t
    qh = high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.astype(np.int8).view(np.uint8),
                           _f16_bytes(d)], axis=1)


def quantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    sub = blocks.reshape(n, 16, 16)
    scale = np.abs(sub).max(axis=-1) / 4
    d = (scale.max(axis=-1, keepdims=True) / 31).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d == 0, 1, d)), -32, 31)
    step = (d * np.where(sc == 0, 1, sc))[..., None]
    q = np.clip(np.rint(sub / step), -4, 3).astype(np.int8).reshape(n, 256)
    low = (q & 3).astype(np.uint8).reshape(n, 2, 4, 32)  # value h*128 + t*32 + k → byte h*32 + k, bits 2t
    qs = low[:, :, 0] | (low[:, :, 1] << 2) | (low[:, :, 2] << 4) | (low[:, :, 3] << 6)
    high = (q >= 0).astype(np.uint8).reshape(n, 8, 32)  # value b*32 + k → byte k, bit b; set means no −4 offset
    hmask = np.zeros((n, 32), dtype=np.uint8)
    for bit in range(8):
        hmask |= high[:, bit] << bit
    stored = (sc + 32).astype(np.uint8)  # 16 six-bit scales: low nibbles in bytes 0–7, top bits in bytes 8–11
    scales = np.zeros((n, 12), dtype=np.uint8)
    for i in range(16):
        scales[:, i % 8] |= (stored[:, i] & 0x0F) << (4 * (i // 8))
        scales[:, 8 + i % 4] |= (stored[:, i] >> 4) << (2 * (i // 4))
    return np.concatenate([hmask, qs.reshape(n, 64), scales, _f16_bytes(d)], axis=1)


_K_QUANTIZERS = {"Q3_K": quantize_q3_k, "Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}


def quantize(values: np.ndarray, type_name: str) -> np.ndarray:
    """``values`` (float32, rows of whole blocks) in ggml type ``type_name``: uint8 ``[rows, row_bytes]``, or the
    float array itself for F32/F16/BF16 (the writer stores those)."""
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    values = np.ascontiguousarray(values, dtype=np.float32)
    if type_name not in _K_QUANTIZERS:
        return gguf.quants.quantize(values, qtype)
    block_size, _type_size = gguf.GGML_QUANT_SIZES[qtype]
    rows = values.reshape(-1, values.shape[-1])
    blocks = _K_QUANTIZERS[type_name](rows.reshape(-1, block_size))
    return blocks.reshape(rows.shape[0], -1).reshape(*values.shape[:-1], -1)


# --- file types (llama-quantize's per-tensor choices for a T5 encoder) ------------------------------------------

FILE_TYPES = {  # name → (gguf LlamaFileType member, base type, raised type for attn_v/ffn_down of some blocks)
    "F32": ("ALL_F32", "F32", None), "F16": ("MOSTLY_F16", "F16", None), "BF16": ("MOSTLY_BF16", "BF16", None),
    "Q8_0": ("MOSTLY_Q8_0", "Q8_0", None), "Q4_0": ("MOSTLY_Q4_0", "Q4_0", None),
    "Q4_1": ("MOSTLY_Q4_1", "Q4_1", None), "Q5_0": ("MOSTLY_Q5_0", "Q5_0", None),
    "Q5_1": ("MOSTLY_Q5_1", "Q5_1", None), "Q6_K": ("MOSTLY_Q6_K", "Q6_K", None),
    "Q5_K_M": ("MOSTLY_Q5_K_M", "Q5_K", "Q6_K"), "Q4_K_M": ("MOSTLY_Q4_K_M", "Q4_K", "Q6_K"),
    "Q3_K_L": ("MOSTLY_Q3_K_L", "Q3_K", "Q5_K"),
}


def _use_more_bits(index: int, count: int) -> bool:
    return index < count // 8 or index >= 7 * count // 8 or (index - count // 8) % 3 == 2


def tensor_type(hf_key: str, file_type: str, num_layers: int) -> str:
    """The ggml type llama-quantize gives ``hf_key`` in a ``file_type`` T5 encoder file."""
    _, base, raised = FILE_TYPES[file_type]
    if hf_key.endswith("layer_norm.weight"):
        return "F32"
    if hf_key.endswith("relative_attention_bias.weight"):
        return "F32" if file_type == "F32" else "F16"
    if raised and hf_key.endswith(("SelfAttention.v.weight", "DenseReluDense.wo.weight")):
        if _use_more_bits(int(hf_key.split(".")[2]), num_layers):
            return raised
    return base


def add_t5_metadata(writer, *, d_model: int, d_ff: int, num_layers: int, num_heads: int, d_kv: int,
                    num_buckets: int, vocab_size: int, file_type: str, eps: float = 1e-6) -> None:
    """llama.cpp's T5EncoderModel metadata (general.*, t5encoder.*, a small t5 tokenizer block)."""
    import gguf

    writer.add_type("model")
    writer.add_name("T5 V1_1 Xxl")
    writer.add_organization("Google")
    writer.add_finetune("encoder-hf")
    writer.add_basename("t5-v1_1")
    writer.add_size_label("xxl")
    writer.add_context_length(512)
    writer.add_embedding_length(d_model)
    writer.add_feed_forward_length(d_ff)
    writer.add_block_count(num_layers)
    writer.add_head_count(num_heads)
    writer.add_key_length(d_kv)
    writer.add_value_length(d_kv)
    writer.add_layer_norm_eps(eps)
    writer.add_relative_attn_buckets_count(num_buckets)
    writer.add_layer_norm_rms_eps(eps)
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[file_type][0]))
    writer.add_tokenizer_model("t5")
    writer.add_tokenizer_pre("default")
    tokens = ["<pad>", "</s>", "<unk>"] + [f"▁tok{i}" for i in range(3, vocab_size)]
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab_size)
    writer.add_token_types([3, 3, 2] + [1] * (vocab_size - 3))
    writer.add_add_space_prefix(True)
    writer.add_remove_extra_whitespaces(True)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(True)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _byte_shape(shape: tuple[int, ...], type_name: str) -> tuple[tuple[int, ...], int]:
    """(shape the writer is told, bytes) of a tensor of ``shape`` stored as ``type_name``."""
    import gguf

    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    stored = (*shape[:-1], shape[-1] // block_size * type_size)
    nbytes = 1
    for dim in stored:
        nbytes *= dim
    return (tuple(shape) if type_name in ("F32", "F16") else stored), nbytes


def _t5_metadata_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """The hyper-parameters llama.cpp writes, read from the HF T5EncoderModel shapes here rather than with the
    loader's ``infer_t5_config``, so the metadata cannot mirror a mistake there."""
    attention = "encoder.block.0.layer.0.SelfAttention."
    num_buckets, num_heads = shapes[attention + "relative_attention_bias.weight"]
    inner, d_model = shapes[attention + "q.weight"]
    feed_forward = "encoder.block.0.layer.1.DenseReluDense."
    d_ff = shapes.get(feed_forward + "wi_0.weight", shapes.get(feed_forward + "wi.weight"))[0]
    vocab_size = shapes.get("shared.weight", shapes.get("encoder.embed_tokens.weight"))[0]
    num_layers = 1 + max(int(key.split(".")[2]) for key in shapes if key.startswith("encoder.block."))
    return dict(d_model=d_model, d_ff=d_ff, num_layers=num_layers, num_heads=num_heads, d_kv=inner // num_heads,
                num_buckets=num_buckets, vocab_size=vocab_size)


def write_gguf_t5_streaming(path: str | os.PathLike, shapes: dict[str, tuple[int, ...]], value_of, file_type: str,
                            *, prefix: str = "") -> str:
    """Writes a city96-style GGUF T5 of ``file_type`` tensor by tensor: ``shapes`` maps HF keys to shapes (in write
    order) and ``value_of(key)`` returns that tensor's float values, so only one tensor is in memory at a time."""
    import gguf

    metadata = _t5_metadata_from_shapes(shapes)
    path = os.fspath(path)
    writer = gguf.GGUFWriter(path, GGUF_ARCH)
    add_t5_metadata(writer, **metadata, file_type=file_type)
    keys = [key for key in shapes if not (key == "encoder.embed_tokens.weight" and "shared.weight" in shapes)]
    types = {key: tensor_type(key, file_type, metadata["num_layers"]) for key in keys}
    numpy_dtypes = {"F32": np.float32, "F16": np.float16}
    for key in keys:
        shape, nbytes = _byte_shape(shapes[key], types[key])
        raw = None if types[key] in numpy_dtypes else gguf.GGMLQuantizationType[types[key]]
        writer.add_tensor_info(prefix + gguf_name(key), shape, np.dtype(numpy_dtypes.get(types[key], np.uint8)),
                               nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for key in keys:
        writer.write_tensor_data(quantize(value_of(key).float().numpy(), types[key]))
    writer.close()
    return path


def write_gguf_t5(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], file_type: str = "F32", *,
                  prefix: str = "") -> str:
    """Writes the HF-layout T5 encoder ``state_dict`` (any float dtype) as a city96-style GGUF of ``file_type``
    (a key of ``FILE_TYPES``); tensor names get ``prefix`` in front. Returns the path."""
    shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
    return write_gguf_t5_streaming(path, shapes, state_dict.__getitem__, file_type, prefix=prefix)


def dequantized_state_dict(state_dict: dict[str, torch.Tensor], file_type: str) -> dict[str, torch.Tensor]:
    """What a ``file_type`` GGUF of ``state_dict`` holds, dequantized to float32 with gguf's own numpy dequantizer:
    the exact weights the product should compute with."""
    import gguf

    config_layers = 1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("encoder.block."))
    out = {}
    for key, value in state_dict.items():
        type_name = tensor_type(key, file_type, config_layers)
        data = quantize(value.float().numpy(), type_name)
        if type_name in ("F32", "F16"):
            out[key] = torch.from_numpy(np.asarray(data, dtype=np.float32).copy())
        else:
            values = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[type_name])
            out[key] = torch.from_numpy(np.asarray(values, dtype=np.float32).copy()).reshape(value.shape)
    return out

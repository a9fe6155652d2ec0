"""Tiny T5 encoders in the exact HF ``T5EncoderModel`` key layout, and a tiny trained T5-style tokenizer.

Usable outside pytest (benchmarks and live tests import these too).
"""

from __future__ import annotations

import json
import os
import random
import shutil

import torch

# Shapes of T5-XXL v1.1 (docs/model-files.md "T5 encoder files");
# pass as ``t5_state_dict(**T5_XXL_SHAPES, device="meta")``.
T5_XXL_SHAPES = dict(d_model=4096, num_layers=24, num_heads=64, d_kv=64, d_ff=10240, vocab_size=32128, num_buckets=32)

FP8_E4M3 = getattr(torch, "float8_e4m3fn", None)


def t5_block_shapes(i: int, *, d_model: int, num_heads: int, d_kv: int, d_ff: int, num_buckets: int = 32,
                    gated: bool = True) -> dict[str, tuple[int, ...]]:
    """Key → shape for block ``i`` of the HF layout (relative attention bias only in block 0)."""
    inner = num_heads * d_kv
    prefix = f"encoder.block.{i}."
    shapes = {
        prefix + "layer.0.SelfAttention.q.weight": (inner, d_model),
        prefix + "layer.0.SelfAttention.k.weight": (inner, d_model),
        prefix + "layer.0.SelfAttention.v.weight": (inner, d_model),
        prefix + "layer.0.SelfAttention.o.weight": (d_model, inner),
        prefix + "layer.0.layer_norm.weight": (d_model,),
    }
    if i == 0:
        shapes[prefix + "layer.0.SelfAttention.relative_attention_bias.weight"] = (num_buckets, num_heads)
    if gated:
        shapes[prefix + "layer.1.DenseReluDense.wi_0.weight"] = (d_ff, d_model)
        shapes[prefix + "layer.1.DenseReluDense.wi_1.weight"] = (d_ff, d_model)
    else:
        shapes[prefix + "layer.1.DenseReluDense.wi.weight"] = (d_ff, d_model)
    shapes[prefix + "layer.1.DenseReluDense.wo.weight"] = (d_model, d_ff)
    shapes[prefix + "layer.1.layer_norm.weight"] = (d_model,)
    return shapes


def random_t5_value(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """fp32 values with T5-like magnitudes, so activations stay in a sensible range at any size."""
    if key.endswith("layer_norm.weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    if key.endswith("relative_attention_bias.weight"):
        return 0.5 * torch.randn(shape, generator=generator)
    if key in ("shared.weight", "encoder.embed_tokens.weight"):
        return torch.randn(shape, generator=generator)
    return torch.randn(shape, generator=generator) * shape[1] ** -0.5


def t5_state_dict(*, d_model: int = 32, num_layers: int = 2, num_heads: int = 4, d_kv: int = 8, d_ff: int = 64,
                  vocab_size: int = 256, num_buckets: int = 32, gated: bool = True, dtype: torch.dtype = torch.float32,
                  seed: int = 0, device: str = "cpu", with_embed_tokens: bool = False,
                  scaled_fp8: bool = False) -> dict[str, torch.Tensor]:
    """A random T5 encoder state dict in HF layout.

    ``device="meta"`` gives the layout without memory (use with ``T5_XXL_SHAPES``). ``with_embed_tokens`` adds the
    duplicate ``encoder.embed_tokens.weight`` some exports carry. ``scaled_fp8`` writes ComfyUI's scaled-fp8 form:
    each linear weight stored as ``(w / scale)`` in fp8 e4m3fn plus a float32 ``scale_weight`` and a ``scaled_fp8``
    marker; the other tensors are stored in ``dtype``.
    """
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (vocab_size, d_model)}
    for i in range(num_layers):
        shapes.update(t5_block_shapes(i, d_model=d_model, num_heads=num_heads, d_kv=d_kv, d_ff=d_ff,
                                      num_buckets=num_buckets, gated=gated))
    shapes["encoder.final_layer_norm.weight"] = (d_model,)

    generator = torch.Generator().manual_seed(seed)
    state_dict: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        is_linear = key.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi_0.weight", "wi_1.weight",
                                  "wi.weight", "wo.weight"))
        if device == "meta":
            state_dict[key] = torch.empty(shape, dtype=FP8_E4M3 if scaled_fp8 and is_linear else dtype, device="meta")
            continue
        value = random_t5_value(key, shape, generator)
        if scaled_fp8 and is_linear:
            scale = value.abs().max() / 448.0  # fills the e4m3fn range, as ComfyUI's scaled files do
            state_dict[key] = (value / scale).to(FP8_E4M3)
            state_dict[key[: -len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            state_dict[key] = value.to(dtype)
    if with_embed_tokens:
        state_dict["encoder.embed_tokens.weight"] = state_dict["shared.weight"]
    if scaled_fp8:
        state_dict["scaled_fp8"] = torch.empty(0, dtype=FP8_E4M3, device=device)
    return {key: value.to(device) if device != "meta" else value for key, value in state_dict.items()}


def upcast_t5_state_dict(state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The plain-HF equivalent of ``state_dict``: every weight in ``dtype`` with scales applied; markers removed."""
    out = {}
    for key, value in state_dict.items():
        if key == "scaled_fp8" or key.endswith(("scale_weight", "scale_input")):
            continue
        value = value.to(dtype)
        scale_key = key[: -len("weight")] + "scale_weight"
        if scale_key in state_dict:
            value = value * state_dict[scale_key].to(dtype)
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer

_WORDS = """a an the of with and in on at by for from to photo painting drawing portrait landscape city night day
cat dog bird horse woman man girl boy old young red green blue yellow black white golden silver dark light bright
soft warm cold rain snow sun sunrise sunset cloud clouds mountain mountains lake river sea ocean forest tree trees
flower flowers garden house street car train book chair table window door sky star stars moon fire water stone
masterpiece best quality highly detailed sharp focus blurry low jpeg artifacts watermark text signature cinematic
lighting shadow shadows reflection reflections neon smiling sitting running standing reading looking eyes hair face
freckles hands dress coat hat glasses wooden metal glass castle bridge tower village field grass beach wave waves""".split()
_PUNCTUATION = [",", ".", "!", ";", ":", "(", ")", "?"]

TINY_TOKENIZER_VOCAB_SIZE = 200


def _tiny_corpus(seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(3000):
        words = []
        for _ in range(rng.randint(3, 12)):
            word = rng.choice(_WORDS)
            if rng.random() < 0.1:
                word = word.upper() if rng.random() < 0.3 else word.capitalize()
            if rng.random() < 0.25:
                word += rng.choice(_PUNCTUATION)
            words.append(word)
        lines.append(" ".join(words))
    return "\n".join(lines)


def _metaspace():
    from tokenizers import pre_tokenizers
    try:  # tokenizers >= 0.14
        return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    except TypeError:  # tokenizers 0.13 (transformers 4.30 pin)
        return pre_tokenizers.Metaspace(replacement="▁", add_prefix_space=True)


def _metaspace_decoder():
    from tokenizers import decoders
    try:
        return decoders.Metaspace(replacement="▁", prepend_scheme="always")
    except TypeError:
        return decoders.Metaspace(replacement="▁", add_prefix_space=True)


def train_tiny_t5_tokenizer(out_dir: str | os.PathLike) -> str:
    """Train a ~200-piece SentencePiece unigram model with T5's special ids and write a T5 tokenizer folder.

    Writes ``spiece.model``, ``tokenizer.json`` (same pipeline as T5's: nmt_nfkc charsmap normaliser,
    whitespace split + Metaspace, ``$A </s>`` post-processor), ``tokenizer_config.json`` and
    ``special_tokens_map.json``. Returns ``out_dir``. Ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, like T5.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    corpus_path = os.path.join(out_dir, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8") as f:
        f.write(_tiny_corpus())
    spm.SentencePieceTrainer.train(
        input=corpus_path, model_prefix=os.path.join(out_dir, "spiece"), vocab_size=TINY_TOKENIZER_VOCAB_SIZE,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", character_coverage=1.0, normalization_rule_name="nmt_nfkc", num_threads=1,
        minloglevel=2)
    os.remove(corpus_path)
    os.remove(os.path.join(out_dir, "spiece.vocab"))

    proto = sentencepiece_model_pb2.ModelProto()
    with open(os.path.join(out_dir, "spiece.model"), "rb") as f:
        proto.ParseFromString(f.read())
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, 2))
    tokenizer.normalizer = normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), _metaspace()])
    tokenizer.decoder = _metaspace_decoder()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    tokenizer.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))

    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(specials, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "legacy": False, "model_max_length": 512,
                   **specials}, f, indent=2)
    return out_dir


def copy_tokenizer(src_dir: str, dst_dir: str, files: tuple[str, ...] = ("tokenizer.json",)) -> str:
    """Copy some files of a tokenizer folder (to build search-order test layouts)."""
    os.makedirs(dst_dir, exist_ok=True)
    for name in files:
        shutil.copy(os.path.join(src_dir, name), os.path.join(dst_dir, name))
    return dst_dir

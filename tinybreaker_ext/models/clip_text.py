"""SD1's CLIP-L text encoder (``refiner.conditioner.*``, HF-transformers names) and prompt encoding as ComfyUI's
``sd1_clip`` does it (docs/numerics.md "Prompt weighting", "SD1 refine window")."""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import ModelFileError
from ..files.state_dict import shape_of, source_name
from ..limits import MAX_PROMPT_TOKENS
from .sd1_refiner import build_with_weights

EXPECTED_CLIP = "a CLIP text model with HF-transformers names (text_model.embeddings.*, text_model.encoder.layers.*)"
CHUNK_LENGTH = 77  # BOS + 75 tokens + EOS
KEEP_TOGETHER_BELOW = 8  # ComfyUI's max_word_length: shorter token groups move whole to the next chunk
_LAYER_INDEX = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
_POSITION_IDS = "embeddings.position_ids"
_PROJECTION = "text_projection.weight"

TokenWeights = list[tuple[int, float]]


def clip_text_config_kwargs(state_dict: Mapping[str, torch.Tensor], *, num_heads: int | None = None,
                            hidden_act: str = "quick_gelu", source: str = "<state dict>") -> dict:
    """CLIPTextConfig arguments read from shapes; heads default to hidden/64 (CLIP-L: 768/64 = 12, bigG:
    1280/64 = 20). ``hidden_act``: CLIP-L's quick_gelu, or OpenCLIP bigG's gelu (shapes cannot tell)."""
    keys = {key.removeprefix("text_model."): key for key in state_dict.keys()}
    token_key = keys.get("embeddings.token_embedding.weight")
    position_key = keys.get("embeddings.position_embedding.weight")
    fc1_key = keys.get("encoder.layers.0.mlp.fc1.weight")
    if not (token_key and position_key and fc1_key):
        raise ModelFileError(source, "missing 'text_model.embeddings.token_embedding.weight' or its siblings",
                             EXPECTED_CLIP)
    vocab, hidden = shape_of(state_dict, token_key)
    layers = 1 + max(int(m.group(1)) for m in map(_LAYER_INDEX.search, keys) if m)
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shape_of(state_dict, fc1_key)[0],
        "num_hidden_layers": layers,
        "num_attention_heads": num_heads or max(1, hidden // 64),
        "max_position_embeddings": shape_of(state_dict, position_key)[0],
        "hidden_act": hidden_act,
        "layer_norm_eps": 1e-5,
        # The pooled output (unused here) would look for these ids; keep them inside the vocabulary of tiny models.
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
        "pad_token_id": vocab - 1,
    }


def load_clip_text(state_dict: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype,
                   num_heads: int | None = None, hidden_act: str = "quick_gelu", with_projection: bool = False):
    """A ``transformers.CLIPTextModel`` with the given weights (keys as stored, ``refiner.conditioner.`` removed),
    or with ``with_projection`` a ``CLIPTextModelWithProjection`` (SDXL's CLIP-G after conversion). transformers 4.x
    nests the model under ``text_model.`` and keeps ``position_ids`` as a saved buffer; 5.x does neither.
    ``position_ids`` is always rebuilt as 0..n-1 (some SD1 files store a float copy that fp16 spoilt)."""
    import transformers  # lazily: importing transformers takes seconds

    model_class = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    source = source_name(state_dict)
    kwargs = clip_text_config_kwargs(state_dict, num_heads=num_heads, hidden_act=hidden_act, source=source)
    if with_projection:
        kwargs["projection_dim"] = shape_of(state_dict, _PROJECTION)[0]
    config = transformers.CLIPTextConfig(**kwargs)
    with torch.device("meta"):
        wanted = model_class(config).state_dict().keys()
    prefix = "text_model." if any(key.startswith("text_model.") for key in wanted) else ""
    tensors = {}
    for key in state_dict.keys():
        bare = key.removeprefix("text_model.")
        if bare == _POSITION_IDS:
            continue
        tensors[bare if bare == _PROJECTION else prefix + bare] = state_dict[key]
    positions = config.max_position_embeddings
    if prefix + _POSITION_IDS in wanted:
        tensors[prefix + _POSITION_IDS] = torch.arange(positions).unsqueeze(0)
    model = build_with_weights(lambda: model_class(config), tensors, device=device, dtype=dtype, source=source,
                               expected=EXPECTED_CLIP)
    embeddings = model.text_model.embeddings if hasattr(model, "text_model") else model.embeddings
    if embeddings.position_ids.is_meta:  # non-persistent buffer (transformers 5.x): not in the state dict
        embeddings.register_buffer("position_ids", torch.arange(positions, device=device).unsqueeze(0),
                                   persistent=False)
    return model


def _special_tokens(tokenizer) -> tuple[int, int]:
    return tuple(tokenizer("")["input_ids"][:2])  # BOS, EOS


def tokenize_clip_prompt(tokenizer, text: str, *, pad: int | None = None) -> list[TokenWeights]:
    """The prompt as 77-token chunks of (token id, weight), packed exactly like ComfyUI's SDTokenizer, from its
    first ``MAX_PROMPT_TOKENS`` tokens (limits.py, "Prompt length"; ComfyUI never cuts). After the EOS, chunks are
    padded with ``pad`` (default EOS, as SD1; SDXL's CLIP-G pads with token 0)."""
    start, end = _special_tokens(tokenizer)
    groups = _first_tokens(_weighted_token_groups(tokenizer, text), MAX_PROMPT_TOKENS)

    room = CHUNK_LENGTH - 1  # a chunk holds BOS + tokens and still needs its EOS
    chunks: list[TokenWeights] = []
    chunk: TokenWeights = [(start, 1.0)]
    for group in groups:
        splittable = len(group) >= KEEP_TOGETHER_BELOW  # long groups are split at the chunk boundary
        while group:
            if len(chunk) + len(group) <= room:
                chunk.extend(group)
                break
            if splittable:
                free = room - len(chunk)
                chunk.extend(group[:free])
                group = group[free:]
            chunks.append(_close_chunk(chunk, end, pad))
            chunk = [(start, 1.0)]
    chunks.append(_close_chunk(chunk, end, pad))
    return chunks


def count_clip_tokens(tokenizer, text: str) -> int:
    """The number of prompt tokens (without BOS/EOS) before any cut."""
    return sum(len(group) for group in _weighted_token_groups(tokenizer, text))


def _weighted_token_groups(tokenizer, text: str) -> list[TokenWeights]:
    from ..prompt_weights import parse_weighted_segments

    return [[(token, weight) for token in tokenizer(segment)["input_ids"][1:-1]]
            for segment, weight in parse_weighted_segments(text)]  # embedding:NAME directives are already removed


def _first_tokens(groups: list[TokenWeights], limit: int) -> list[TokenWeights]:
    kept = []
    for group in groups:
        if limit <= 0:
            break
        kept.append(group[:limit])
        limit -= len(kept[-1])
    return kept


def _close_chunk(chunk: TokenWeights, end: int, pad: int | None = None) -> TokenWeights:
    """EOS, then padding: EOS again for SD1 (``pad`` None), token 0 for SDXL's CLIP-G."""
    padding = CHUNK_LENGTH - len(chunk) - 1
    return chunk + [(end, 1.0)] + [(end if pad is None else pad, 1.0)] * padding


@torch.no_grad()
def encode_clip_tokens(model, chunks: list[TokenWeights], *, start: int, end: int, pad: int | None = None,
                       penultimate: bool = False, pooled: bool = False):
    """[1, 77 * len(chunks), hidden] float32, weights applied: the last hidden state after the final norm (SD1), or
    with ``penultimate`` the hidden state before the last layer, without the final norm (ComfyUI's SDXL encoders).
    With ``pooled`` (a CLIPTextModelWithProjection) also the first chunk's projected EOS state [1, projection]."""
    device = next(model.parameters()).device
    weighted = any(weight != 1.0 for chunk in chunks for _, weight in chunk)
    ids = [[token for token, _ in chunk] for chunk in chunks]
    if weighted:
        ids.append([token for token, _ in _close_chunk([(start, 1.0)], end, pad)])  # the empty prompt
    output = model(input_ids=torch.tensor(ids, device=device), output_hidden_states=penultimate)
    hidden = (output.hidden_states[-2] if penultimate else output[0]).float()
    encoded = hidden[:len(chunks)]
    if weighted:
        empty = hidden[-1]
        weights = torch.tensor([[weight for _, weight in chunk] for chunk in chunks], device=device).unsqueeze(-1)
        encoded = (encoded - empty) * weights + empty  # weight 1 leaves a token unchanged (up to rounding)
        encoded = torch.where(weights == 1.0, hidden[:len(chunks)], encoded)
    encoded = encoded.reshape(1, -1, encoded.shape[-1])
    if pooled:
        return encoded, output.text_embeds[:1].float()
    return encoded


def encode_clip_prompt(model, tokenizer, text: str) -> torch.Tensor:
    """ComfyUI-compatible SD1 conditioning for ``text``: Tensor[1, 77 * chunks, hidden] float32."""
    start, end = _special_tokens(tokenizer)
    return encode_clip_tokens(model, tokenize_clip_prompt(tokenizer, text), start=start, end=end)

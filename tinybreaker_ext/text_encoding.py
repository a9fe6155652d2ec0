"""Prompt → T5 embedding with ComfyUI's weighting (docs/numerics.md "Prompt weighting"), and a bounded cache of
results (docs/numerics.md "Caching")."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

import torch

from .models.t5_tokenizer import DEFAULT_MIN_LENGTH, empty_ids


def encode_t5_prompt(encoder, tokenizer, text: str, min_length: int = DEFAULT_MIN_LENGTH, *,
                     cache: "PromptEmbeddingCache | None" = None) -> torch.Tensor:
    """``Tensor[1, L, d_model]`` float32 for ``text``; with ``cache``, the stored one for an unchanged ``cache_key``.
    The weighting's empty sequence shares the batch (T5 has no attention mask here, so batching changes nothing)."""
    if cache is not None:
        return cache.get_or_compute(cache_key(encoder, tokenizer, text, min_length),
                                    lambda: encode_t5_prompt(encoder, tokenizer, text, min_length))
    ids, weights = tokenizer.tokenize_with_weights(text, min_length=min_length)
    if all(weight == 1.0 for weight in weights):
        return encoder.encode(torch.tensor([ids], dtype=torch.long)).float()
    both = encoder.encode(torch.tensor([ids, empty_ids(len(ids))], dtype=torch.long)).float()
    z, z_empty = both[0:1], both[1:2]
    weight = torch.tensor(weights, dtype=z.dtype, device=z.device).view(1, -1, 1)
    weighted = (z - z_empty) * weight + z_empty
    return torch.where(weight != 1.0, weighted, z)  # tokens of weight 1 stay bit-identical, as in ComfyUI


def cache_key(encoder, tokenizer, text: str, min_length: int) -> tuple:
    """What determines an embedding: which weights (file, size, mtime, dtype), which tokenizer, the text, the mode."""
    encoder_id = getattr(encoder, "identity", None) or f"object:{id(encoder)}"
    tokenizer_id = getattr(tokenizer, "source", None) or f"object:{id(tokenizer)}"
    return (encoder_id, tokenizer_id, text, int(min_length))


class PromptEmbeddingCache:
    """LRU cache of prompt embeddings (at most ``max_entries``). Results are shared: callers must not modify them."""

    def __init__(self, max_entries: int = 32):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get_or_compute(self, key: Hashable, compute) -> torch.Tensor:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

"""Prompt → embedding with ComfyUI's weighting formula, and the prompt-embedding cache."""

from __future__ import annotations

import os

import pytest
import torch

from builders.t5 import t5_state_dict
from tinybreaker_ext.models.t5_encoder import load_t5_encoder
from tinybreaker_ext.text_encoding import PromptEmbeddingCache, encode_t5_prompt

TINY = dict(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64, vocab_size=256)


class CountingEncoder:
    """Wraps a real encoder and counts how often T5 actually runs."""

    def __init__(self, encoder):
        self.inner = encoder
        self.identity = encoder.identity
        self.calls = 0

    def encode(self, ids):
        self.calls += 1
        return self.inner.encode(ids)


@pytest.fixture(scope="module")
def encoder():
    return load_t5_encoder(t5_state_dict(**TINY), mode="cpu")


@pytest.fixture(scope="module")
def spm(t5_tokenizer_dir):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=os.path.join(t5_tokenizer_dir, "spiece.model"))


def test_unweighted_prompt_is_one_plain_encode(encoder, t5_tokenizer, spm):
    out = encode_t5_prompt(encoder, t5_tokenizer, "a red house by the lake")
    ids = spm.encode("a red house by the lake") + [1]
    ids += [0] * (77 - len(ids))
    assert out.shape == (1, 77, 32) and out.dtype == torch.float32
    assert torch.equal(out, encoder.encode(torch.tensor([ids])))


def test_weighted_tokens_move_away_from_the_empty_prompt(encoder, t5_tokenizer, spm):
    text = "a (red:1.5) house, (blue:0.5) sky"
    out = encode_t5_prompt(encoder, t5_tokenizer, text)
    segments = [("a ", 1.0), ("red", 1.5), (" house, ", 1.0), ("blue", 0.5), (" sky", 1.0)]
    ids, weights = [], []
    for segment, weight in segments:
        ids += spm.encode(segment)
        weights += [weight] * len(spm.encode(segment))
    ids = ids + [1] + [0] * (76 - len(ids))
    weights += [1.0] * (77 - len(weights))
    z = encoder.encode(torch.tensor([ids]))[0]
    z_empty = encoder.encode(torch.tensor([[1] + [0] * 76]))[0]
    expected = z.clone()
    for position, weight in enumerate(weights):
        if weight != 1.0:
            expected[position] = (z[position] - z_empty[position]) * weight + z_empty[position]
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out[0], z, atol=1e-3)  # the weights really changed something


def test_long_prompt_keeps_every_token(encoder, t5_tokenizer, spm):
    text = ", ".join(["an old stone bridge over the river"] * 10)
    out = encode_t5_prompt(encoder, t5_tokenizer, text)
    assert out.shape == (1, len(spm.encode(text)) + 1, 32)


def test_unchanged_prompt_never_runs_t5_again(encoder, t5_tokenizer):
    counting = CountingEncoder(encoder)
    cache = PromptEmbeddingCache()
    first = encode_t5_prompt(counting, t5_tokenizer, "a (cat:1.2)", cache=cache)
    assert counting.calls == 1
    again = encode_t5_prompt(counting, t5_tokenizer, "a (cat:1.2)", cache=cache)
    assert counting.calls == 1 and again is first
    encode_t5_prompt(counting, t5_tokenizer, "a (cat:1.3)", cache=cache)
    encode_t5_prompt(counting, t5_tokenizer, "a (cat:1.2)", min_length=1, cache=cache)
    assert counting.calls == 3


def test_cache_is_keyed_on_the_encoder_identity(t5_tokenizer):
    cache = PromptEmbeddingCache()
    one = CountingEncoder(load_t5_encoder(t5_state_dict(**TINY, seed=1), mode="cpu"))
    two = CountingEncoder(load_t5_encoder(t5_state_dict(**TINY, seed=2), mode="cpu"))
    a = encode_t5_prompt(one, t5_tokenizer, "a cat", cache=cache)
    b = encode_t5_prompt(two, t5_tokenizer, "a cat", cache=cache)
    assert (one.calls, two.calls) == (1, 1) and not torch.equal(a, b)


def test_cache_evicts_the_least_recently_used(encoder, t5_tokenizer):
    counting = CountingEncoder(encoder)
    cache = PromptEmbeddingCache(max_entries=2)
    for text in ("a", "b", "a", "c"):  # 'a' is refreshed, so 'c' evicts 'b'
        encode_t5_prompt(counting, t5_tokenizer, text, cache=cache)
    assert counting.calls == 3 and len(cache) == 2
    encode_t5_prompt(counting, t5_tokenizer, "c", cache=cache)
    encode_t5_prompt(counting, t5_tokenizer, "a", cache=cache)
    assert counting.calls == 3
    encode_t5_prompt(counting, t5_tokenizer, "b", cache=cache)
    assert counting.calls == 4 and len(cache) == 2
    with pytest.raises(ValueError):
        PromptEmbeddingCache(max_entries=0)

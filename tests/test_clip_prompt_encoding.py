"""ComfyUI-style SD1 prompt encoding: 77-token chunks, EOS padding, group keeping/splitting, token weighting."""

from __future__ import annotations

import pytest
import torch

from builders.sd1 import tiny_clip_vocab
from tinybreaker_ext.models.clip_text import encode_clip_prompt, tokenize_clip_prompt

VOCAB = tiny_clip_vocab()
BOS, EOS = VOCAB["<|startoftext|>"], VOCAB["<|endoftext|>"]
A, CAT, RED, DOG = VOCAB["a</w>"], VOCAB["cat</w>"], VOCAB["red</w>"], VOCAB["dog</w>"]


def _chunk(*tokens_and_weights):
    """BOS, the given (token, weight) pairs, then EOS up to 77 (ComfyUI pads SD1 chunks with EOS)."""
    body = [(BOS, 1.0)] + list(tokens_and_weights)
    return body + [(EOS, 1.0)] * (77 - len(body))


def test_short_prompt_is_one_chunk_padded_with_eos(tiny_clip_tokenizer):
    assert tokenize_clip_prompt(tiny_clip_tokenizer, "a red cat") == [_chunk((A, 1.0), (RED, 1.0), (CAT, 1.0))]


def test_empty_prompt_is_bos_then_eos(tiny_clip_tokenizer):
    assert tokenize_clip_prompt(tiny_clip_tokenizer, "") == [_chunk()]


def test_75_tokens_fill_one_chunk_and_the_76th_opens_another(tiny_clip_tokenizer):
    full = tokenize_clip_prompt(tiny_clip_tokenizer, "a " * 75)
    assert full == [_chunk(*[(A, 1.0)] * 75)]
    assert full[0][75] == (A, 1.0) and full[0][76] == (EOS, 1.0)
    over = tokenize_clip_prompt(tiny_clip_tokenizer, "a " * 76)
    assert over == [_chunk(*[(A, 1.0)] * 75), _chunk((A, 1.0))]


def test_a_short_weighted_group_that_does_not_fit_moves_whole_to_the_next_chunk(tiny_clip_tokenizer):
    chunks = tokenize_clip_prompt(tiny_clip_tokenizer, "a " * 73 + "(cat cat cat cat cat:1.5)")
    assert chunks == [_chunk(*[(A, 1.0)] * 73), _chunk(*[(CAT, 1.5)] * 5)]


def test_a_group_of_eight_or_more_tokens_is_split_at_the_chunk_boundary(tiny_clip_tokenizer):
    chunks = tokenize_clip_prompt(tiny_clip_tokenizer, "a " * 73 + "(" + "cat " * 10 + ":1.5)")
    assert chunks == [_chunk(*[(A, 1.0)] * 73, *[(CAT, 1.5)] * 2), _chunk(*[(CAT, 1.5)] * 8)]


def test_weights_follow_comfyui_syntax(tiny_clip_tokenizer):
    chunks = tokenize_clip_prompt(tiny_clip_tokenizer, "(red:1.2) ((cat)) dog")
    assert chunks[0][:4] == [(BOS, 1.0), (RED, 1.2), (CAT, pytest.approx(1.21)), (DOG, 1.0)]


def _encode(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids))[0].float()


def test_unweighted_prompt_is_the_plain_last_hidden_state(tiny_clip_model, tiny_clip_tokenizer):
    encoded = encode_clip_prompt(tiny_clip_model, tiny_clip_tokenizer, "a red cat")
    ids = [BOS, A, RED, CAT] + [EOS] * 73
    assert encoded.shape == (1, 77, 32) and encoded.dtype == torch.float32
    torch.testing.assert_close(encoded, _encode(tiny_clip_model, [ids]))


def test_weighted_tokens_move_away_from_the_empty_prompt_encoding(tiny_clip_model, tiny_clip_tokenizer):
    encoded = encode_clip_prompt(tiny_clip_model, tiny_clip_tokenizer, "(red:1.5) cat (dog:0.5)")
    z = _encode(tiny_clip_model, [[BOS, RED, CAT, DOG] + [EOS] * 73])[0]
    z_empty = _encode(tiny_clip_model, [[BOS, EOS] + [EOS] * 75])[0]
    expected = z.clone()
    expected[1] = (z[1] - z_empty[1]) * 1.5 + z_empty[1]
    expected[3] = (z[3] - z_empty[3]) * 0.5 + z_empty[3]
    torch.testing.assert_close(encoded[0], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(encoded[0, 1], z[1])  # the weight did something


def test_long_prompt_is_the_concatenation_of_its_chunks(tiny_clip_model, tiny_clip_tokenizer):
    encoded = encode_clip_prompt(tiny_clip_model, tiny_clip_tokenizer, "a " * 76 + "(red:2)")
    first = [BOS] + [A] * 75 + [EOS]
    second = [BOS, A, RED] + [EOS] * 74
    z = _encode(tiny_clip_model, [first, second])
    z_empty = _encode(tiny_clip_model, [[BOS] + [EOS] * 76])[0]
    z[1, 2] = (z[1, 2] - z_empty[2]) * 2.0 + z_empty[2]
    assert encoded.shape == (1, 154, 32)
    torch.testing.assert_close(encoded, z.reshape(1, 154, 32), rtol=1e-5, atol=1e-5)

"""SD1's CLIP-L text model from HF-named tensors: config from shapes, the same output as transformers' own model."""

from __future__ import annotations

import pytest
import torch

from builders.sd1 import (CLIP_L, CLIP_L_PARAMETERS, clip_l_full_meta_state_dict, clip_text_state_dict_of,
                          tiny_clip_text_model)
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.models.clip_text import clip_text_config_kwargs, load_clip_text


def _ids(batch=2, length=77, vocab=500, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_loaded_model_gives_the_same_last_hidden_state_as_the_source_model(tiny_clip_model):
    state_dict = clip_text_state_dict_of(tiny_clip_model)
    assert all(key.startswith("text_model.") for key in state_dict)  # the names of the file
    model = load_clip_text(state_dict, device="cpu", dtype=torch.float32, num_heads=2)
    ids = _ids()
    with torch.no_grad():
        expected = tiny_clip_model(input_ids=ids)[0]
    torch.testing.assert_close(model(input_ids=ids)[0], expected)


def test_stored_position_ids_are_ignored_and_rebuilt(tiny_clip_model):
    # Some SD1 files carry a float position_ids that fp16 rounding spoilt; others carry none at all.
    ids = _ids(seed=1)
    with torch.no_grad():
        expected = tiny_clip_model(input_ids=ids)[0]
    spoilt = clip_text_state_dict_of(tiny_clip_model)
    spoilt["text_model.embeddings.position_ids"] = torch.zeros(1, 77)
    missing = clip_text_state_dict_of(tiny_clip_model, include_position_ids=False)
    for state_dict in (spoilt, missing):
        model = load_clip_text(state_dict, device="cpu", dtype=torch.float32, num_heads=2)
        torch.testing.assert_close(model(input_ids=ids)[0], expected)


def test_head_count_defaults_to_hidden_over_64():
    model = tiny_clip_text_model(hidden=128, layers=1, heads=2, seed=2)  # 128 / 64 = 2 heads
    state_dict = clip_text_state_dict_of(model)
    assert clip_text_config_kwargs(state_dict)["num_attention_heads"] == 2
    loaded = load_clip_text(state_dict, device="cpu", dtype=torch.float32)
    ids = _ids(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids)[0], model(input_ids=ids)[0])


def test_full_clip_l_layout_is_consumed_on_meta():
    state_dict = clip_l_full_meta_state_dict()
    assert tuple(state_dict["text_model.embeddings.token_embedding.weight"].shape) == (49408, 768)  # CLIP-L's
    assert tuple(state_dict["text_model.embeddings.position_embedding.weight"].shape) == (77, 768)
    assert tuple(state_dict["text_model.final_layer_norm.weight"].shape) == (768,)
    assert "text_model.encoder.layers.8.self_attn.out_proj.weight" in state_dict
    assert sum(t.numel() for t in state_dict.values() if t.is_floating_point()) == CLIP_L_PARAMETERS
    config = clip_text_config_kwargs(state_dict)
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (768, 12, 12)
    assert (config["intermediate_size"], config["vocab_size"]) == (CLIP_L["intermediate"], CLIP_L["vocab"])
    assert config["max_position_embeddings"] == 77
    model = load_clip_text(state_dict, device="meta", dtype=torch.float16)
    assert sum(p.numel() for p in model.parameters()) == CLIP_L_PARAMETERS


def test_a_unet_is_not_taken_for_a_text_model():
    with pytest.raises(ModelFileError, match="token_embedding"):
        load_clip_text({"input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}, device="cpu", dtype=torch.float32)

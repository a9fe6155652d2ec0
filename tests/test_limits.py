"""The limits every front end shares (tinybreaker_ext/limits.py): prompt length in tokens, image area per stage,
batch size, finite numbers."""

from __future__ import annotations

import math
import time

import pytest
import torch

from builders.t5 import t5_state_dict
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.limits import MAX_IMAGE_AREA, MAX_PROMPT_TOKENS, AreaLimits, LimitError
from tinybreaker_ext.models.clip_text import CHUNK_LENGTH, count_clip_tokens, tokenize_clip_prompt
from tinybreaker_ext.models.t5_encoder import load_t5_encoder
from tinybreaker_ext.models.t5_tokenizer import EOS_ID
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.plan import BATCH_SIZE_MAX, ImageRequest, make_plan
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.text_encoding import encode_t5_prompt

ON = TinyBreakerParams(enabled=True)
LONG_PROMPT = ("a lighthouse on a cliff at dusk, waves, gulls, (warm light:1.2), " * 400)[:20_000]


def plan(text="a cat", *, width=1024, height=1024, batch_size=1, seed=1, limits=AreaLimits(), t5_tokens=None,
         **field_values):
    request = ImageRequest(text, "", width, height, seed, batch_size, area_limits=limits)
    return make_plan(ON.replace(**field_values), request, StyleLibrary.load_builtin(), t5_tokens=t5_tokens)


# -- prompt length ---------------------------------------------------------------------------------------------------
def test_t5_keeps_the_first_tokens_and_the_eos_like_diffusers(t5_tokenizer):
    ids, weights = t5_tokenizer.tokenize_with_weights(LONG_PROMPT)
    assert len(ids) == len(weights) == MAX_PROMPT_TOKENS and ids[-1] == EOS_ID
    full, _ = t5_tokenizer.tokenize_with_weights(LONG_PROMPT, max_length=None)
    assert ids[:-1] == full[:MAX_PROMPT_TOKENS - 1]
    assert t5_tokenizer.count_tokens(LONG_PROMPT) == len(full) > 5 * MAX_PROMPT_TOKENS
    assert 1.2 in weights  # the weighted segments keep their weights up to the cut


def test_a_short_prompt_is_not_changed_by_the_limit(t5_tokenizer):
    assert t5_tokenizer.tokenize_with_weights("a red cube") == t5_tokenizer.tokenize_with_weights(
        "a red cube", max_length=None)


def test_a_20000_character_prompt_encodes_to_the_limit_in_seconds(t5_tokenizer):
    encoder = load_t5_encoder(t5_state_dict(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64,
                                            vocab_size=256), mode="cpu")
    started = time.monotonic()
    embedding = encode_t5_prompt(encoder, t5_tokenizer, LONG_PROMPT)
    assert time.monotonic() - started < 10
    assert embedding.shape[:2] == (1, MAX_PROMPT_TOKENS) and torch.isfinite(embedding).all()


def test_clip_keeps_the_same_number_of_tokens(tiny_clip_tokenizer):
    assert count_clip_tokens(tiny_clip_tokenizer, LONG_PROMPT) > 5 * MAX_PROMPT_TOKENS
    chunks = tokenize_clip_prompt(tiny_clip_tokenizer, LONG_PROMPT)
    assert len(chunks) == math.ceil(MAX_PROMPT_TOKENS / (CHUNK_LENGTH - 2))
    start, end = chunks[0][0][0], chunks[0][-1][0]
    assert sum(1 for chunk in chunks for token, _ in chunk if token not in (start, end)) == MAX_PROMPT_TOKENS
    short = tokenize_clip_prompt(tiny_clip_tokenizer, "a red cube")  # not cut
    kept = sum(token not in (start, end) for token, _ in short[0])
    assert kept == count_clip_tokens(tiny_clip_tokenizer, "a red cube") > 0


def test_the_plan_warns_when_a_t5_text_will_be_cut(t5_tokenizer):
    started = time.monotonic()
    made = plan(LONG_PROMPT, t5_tokens=t5_tokenizer.count_tokens, style="none")
    assert time.monotonic() - started < 10
    warning, = [w for w in made.warnings if "T5 tokens" in w]
    assert f"only the first {MAX_PROMPT_TOKENS} are used" in warning and "the prompt" in warning
    assert not [w for w in plan("a cat", t5_tokens=t5_tokenizer.count_tokens).warnings if "tokens" in w]


# -- image area ------------------------------------------------------------------------------------------------------
def test_an_8192_square_request_is_refused_at_once_with_the_limit_in_the_message():
    started = time.monotonic()
    with pytest.raises(LimitError) as caught:
        plan(width=8192, height=8192)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "8192x8192 is 67.1 megapixels" in message and "2048x2048" in message and "\n" not in message
    assert caught.value.limit == "image" and isinstance(caught.value, ParameterError)


def test_the_largest_allowed_image_and_every_preset_upscaled_by_six_pass():
    assert plan(width=2048, height=2048).width * 2048 == MAX_IMAGE_AREA
    for aspect in ("1:1", "3:2", "16:9", "21:9", "32:9"):
        made = plan(f"a cat --aspect {aspect} --large --portrait", width=None, height=None, upscale=True,
                    upscale_by=6)
        assert made.output_size[0] * made.output_size[1] <= AreaLimits().upscaled


def test_the_upscaled_output_has_its_own_limit():
    with pytest.raises(LimitError) as caught:
        plan(width=2048, height=2048, upscale=True, upscale_by=6)
    assert caught.value.limit == "upscaled" and "12288x12288" in str(caught.value)
    assert plan(width=2048, height=2048, upscale=False, upscale_by=6).output_size == (2048, 2048)


def test_the_limits_can_be_changed_per_request():
    assert plan(width=4096, height=4096, limits=AreaLimits(image=4096 * 4096)).width == 4096
    with pytest.raises(LimitError):
        plan(width=1024, height=1024, limits=AreaLimits(image=512 * 512))


def test_inline_size_arguments_meet_the_same_limit():
    with pytest.raises(LimitError):
        plan("a cat --aspect 1:1 --large", width=None, height=None, limits=AreaLimits(image=1024 * 1024))


# -- batch, seeds, finite numbers -------------------------------------------------------------------------------------
def test_a_requested_batch_over_the_limit_is_refused_and_an_inline_one_clamped():
    with pytest.raises(ParameterError, match=f"from 1 to {BATCH_SIZE_MAX}"):
        plan(batch_size=BATCH_SIZE_MAX + 1)
    with pytest.raises(ParameterError):
        plan(batch_size=0)
    assert plan("a cat --batch-size 99").batch_size == BATCH_SIZE_MAX


@pytest.mark.parametrize("request_values", [dict(width=float("nan"), height=512), dict(width=512, height=math.inf),
                                            dict(seed=float("nan")), dict(seed=math.inf),
                                            dict(batch_size=float("nan"))])
def test_non_finite_request_numbers_are_refused(request_values):
    with pytest.raises(ParameterError):
        plan(**request_values)


@pytest.mark.parametrize("field", ["base_cfg", "refine_cfg", "refine_strength", "upscale_by"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "-inf", "1e999"])
def test_non_finite_field_values_are_refused(field, value):
    with pytest.raises(ParameterError, match=field):
        ON.replace(**{field: value})


def test_inline_numbers_cannot_be_infinite_and_a_huge_cfg_adjust_is_clamped():
    made = plan("a cat --cfg-adjust 1e999 --cfg-shift 1e3")
    assert any("--cfg-adjust" in w for w in made.warnings) and math.isfinite(made.base.cfg)
    made = plan("a cat --cfg-adjust 1e300", style="none", base_cfg=4)
    assert made.base.cfg == 4 + 30 and any("out of range" in w for w in made.warnings)


def test_seed_minus_one_is_random_everywhere():
    class Fixed:
        def randint(self, a, b):
            return 4242

    request = ImageRequest("a cat", "", 512, 512, -1, 1)
    assert make_plan(ON, request, StyleLibrary.load_builtin(), rng=Fixed()).seed == 4242
    inline = ImageRequest("a cat --seed -1", "", 512, 512, 5, 1)
    assert make_plan(ON, inline, StyleLibrary.load_builtin(), rng=Fixed()).seed == 4242

import pytest
from hypothesis import given, settings, strategies as st

from tinybreaker_ext.params import DETAIL_LEVEL_WORDS, UPSCALE_NOISE_WORDS
from tinybreaker_ext.prompt import grammar
from tinybreaker_ext.prompt.grammar import ARGUMENTS, parse_inline_prompt


def values_of(text):
    return parse_inline_prompt(text).values


# (text, argument, typed value) for every argument and alias of docs/numerics.md "Inline prompt arguments".
ARGUMENT_CASES = [
    ("--style PHOTO", "style", "PHOTO"),
    ("--no ugly, blurry", "no", "ugly, blurry"),
    ("--negative ugly", "no", "ugly"),
    ("--refine a dog", "refine", "a dog"),
    ("--refine !a dog", "refine", "!a dog"),
    ("--cfg-shift -1", "cfg-shift", -1),
    ("--cfg-shift +2", "cfg-shift", 2),
    ("--c 3", "cfg-shift", 3),
    ("--image-shift 4", "image-shift", 4),
    ("--i -2", "image-shift", -2),
    ("--upscale on", "upscale", True),
    ("--upscale true", "upscale", True),
    ("--upscale YES", "upscale", True),
    ("--upscale off", "upscale", False),
    ("--upscale false", "upscale", False),
    ("--u no", "upscale", False),
    ("--upscale", "upscale", True),          # fixed: bare flag means on
    ("--upscale enhancer", "upscale", "enhancer"),
    ("--u Upscaler", "upscale", "upscaler"),
    ("--upscale-model R-ESRGAN 4x+", "upscale-model", "R-ESRGAN 4x+"),
    ("--upscale-noise 2", "upscale-noise", 2),
    ("--upscale-noise -1", "upscale-noise", -1),
    ("--detail-level 2", "detail-level", 2),
    ("--d -3", "detail-level", -3),
    ("--seed 5", "seed", 5),
    ("--s 0", "seed", 0),
    ("--seed random", "seed", "random"),
    ("--seed Random", "seed", "random"),
    ("--seed -1", "seed", "random"),
    ("--aspect 3:2", "aspect", (3, 2)),
    ("--a 16:9", "aspect", (16, 9)),
    ("--aspect 2:1", "aspect", (2, 1)),      # fixed: stays 2:1
    ("--aspect 5:1", "aspect", (5, 1)),
    ("--aspect 1:9", "aspect", (1, 6)),      # clamped, with a warning
    ("--landscape", "landscape", True),
    ("--portrait", "portrait", True),
    ("--small", "small", True),
    ("--medium", "medium", True),
    ("--large", "large", True),
    ("--batch-size 4", "batch-size", 4),
    ("--b 2", "batch-size", 2),
    ("--variant 7", "variant", 7),
    ("--cfg-adjust 0.5", "cfg-adjust", 0.5),
    ("--cfg-adjust -1", "cfg-adjust", -1.0),
]


@pytest.mark.parametrize("text, name, expected", ARGUMENT_CASES)
def test_every_argument_and_alias(text, name, expected):
    parsed = parse_inline_prompt("a cat " + text)
    assert parsed.prompt == "a cat"
    assert parsed.values[name] == expected
    assert not any("unknown argument" in warning for warning in parsed.warnings)


def test_every_argument_of_the_spec_has_a_case():
    covered = {name for _, name, _ in ARGUMENT_CASES} | {"prompt"}
    assert covered == {spec.name for spec in ARGUMENTS}
    aliases = {alias for spec in ARGUMENTS for alias in spec.aliases}
    written = {text.split()[0][2:] for text, _, _ in ARGUMENT_CASES}
    assert aliases <= written


@pytest.mark.parametrize("word, expected", list(DETAIL_LEVEL_WORDS.items()))
def test_detail_level_words(word, expected):
    # in field units (params.py): "none" is the detail level field's minimum, which turns the refine off
    assert DETAIL_LEVEL_WORDS == {"none": -10, "minimal": -2, "low": -1, "normal": 0, "high": 1, "veryhigh": 2,
                                  "maximum": 3}
    assert values_of(f"--detail-level {word}")["detail-level"] == word
    assert values_of(f"--d {word.upper()}")["detail-level"] == word  # case-insensitive (documented)


@pytest.mark.parametrize("word", list(UPSCALE_NOISE_WORDS))
def test_upscale_noise_words(word):
    # in steps of 0.2 (the reference's deltas -0.4 … +0.6); "none" is the field's minimum, which zeroes any style's
    assert UPSCALE_NOISE_WORDS == {"none": -5, "minimal": -2, "low": -1, "normal": 0, "high": 1, "veryhigh": 2,
                                   "maximum": 3}
    assert values_of(f"--upscale-noise {word}")["upscale-noise"] == word
    assert values_of(f"--upscale-noise {word.title()}")["upscale-noise"] == word


def test_argument_names_are_case_insensitive():
    assert values_of("--SEED 5 --Aspect 3:2 --PORTRAIT") == {"seed": 5, "aspect": (3, 2), "portrait": True}


def test_preprocessing_strips_the_text_and_each_line():
    parsed = parse_inline_prompt("  \n  a cat  \n  on a roof \n\n  --seed 5  \n ")
    assert parsed.text == "a cat\non a roof\n\n--seed 5"
    assert parsed.prompt == "a cat\non a roof"


def test_prompt_is_the_text_before_the_first_double_dash():
    parsed = parse_inline_prompt("a cat--seed 5")
    assert parsed.prompt == "a cat" and parsed.values == {"seed": 5}
    assert parse_inline_prompt("--seed 5").prompt == ""
    assert parse_inline_prompt("").prompt == "" and parse_inline_prompt("").values == {}


def test_argument_values_may_span_lines_and_names_end_at_any_whitespace():
    parsed = parse_inline_prompt("a cat\n--no ugly\nblurry\n--seed\n5\n--portrait\n--refine")
    assert parsed.values["no"] == "ugly\nblurry"
    assert parsed.values["seed"] == 5
    assert parsed.values["portrait"] is True
    assert parsed.values["refine"] == ""


def test_last_value_wins_and_aliases_share_one_slot():
    assert values_of("--seed 1 --seed 2")["seed"] == 2
    assert values_of("--c 1 --cfg-shift 2")["cfg-shift"] == 2
    assert values_of("--cfg-shift 2 --c 1")["cfg-shift"] == 1
    assert values_of("--no a --negative b")["no"] == "b"
    parsed = parse_inline_prompt("--seed 1 --aspect 3:2 --s 9")
    assert list(parsed.args) == ["aspect", "seed"] and parsed.args["seed"] == "9"


@pytest.mark.parametrize("text, name, fragment", [
    ("--seed abc", "seed", "'abc'"),
    ("--seed 1.5", "seed", "'1.5'"),
    ("--seed -5", "seed", "-5"),
    ("--cfg-shift 1.5", "cfg-shift", "'1.5'"),
    ("--cfg-shift", "cfg-shift", "whole number"),
    ("--image-shift x", "image-shift", "'x'"),
    ("--upscale maybe", "upscale", "'maybe'"),
    ("--upscale-model", "upscale-model", "needs a name"),
    ("--upscale-noise loud", "upscale-noise", "'loud'"),
    ("--detail-level extreme", "detail-level", "'extreme'"),
    ("--aspect wide", "aspect", "W:H"),
    ("--aspect 0:1", "aspect", "at least 1"),
    ("--batch-size 0", "batch-size", "at least 1"),
    ("--b two", "batch-size", "'two'"),
    ("--variant v2", "variant", "'v2'"),
    ("--cfg-adjust nan", "cfg-adjust", "'nan'"),
    ("--cfg-adjust inf", "cfg-adjust", "'inf'"),
    ("--style", "style", "style name"),
    ("--seed 99999999999999999999999999999999999", "seed", "9999"),
])
def test_bad_values_warn_naming_the_argument_and_are_dropped(text, name, fragment):
    parsed = parse_inline_prompt("a cat " + text)
    assert name not in parsed.values
    assert any(f"--{name}" in warning and fragment in warning for warning in parsed.warnings), parsed.warnings


def test_unknown_arguments_warn_with_a_suggestion():
    parsed = parse_inline_prompt("a cat --sead 5 --colour red")
    assert [warning.split()[2] for warning in parsed.warnings] == ["--sead", "--colour"]
    assert parsed.values == {}
    assert any("--sead" in warning and "did you mean --seed" in warning for warning in parsed.warnings)
    assert any("--colour" in warning for warning in parsed.warnings)


def test_text_after_a_lone_double_dash_warns():
    parsed = parse_inline_prompt("a cat -- on a roof")
    assert parsed.prompt == "a cat" and parsed.values == {}
    assert any("on a roof" in warning for warning in parsed.warnings)


def test_flags_with_values_and_prompt_argument_warn():
    parsed = parse_inline_prompt("a cat --portrait please --prompt a dog")
    assert parsed.values == {"portrait": True}
    assert any("--portrait" in w and "please" in w for w in parsed.warnings)
    assert any("--prompt" in w for w in parsed.warnings)


def test_aspect_clamping_and_extra_text_warn():
    parsed = parse_inline_prompt("--aspect 1:9")
    assert parsed.values["aspect"] == (1, 6)
    assert any("1:9" in w and "1:6" in w for w in parsed.warnings)
    parsed = parse_inline_prompt("--aspect 3:2 please")
    assert parsed.values["aspect"] == (3, 2) and any("please" in w for w in parsed.warnings)


def test_deprecated_arguments_still_work_and_say_so():
    parsed = parse_inline_prompt("--variant 3 --cfg-adjust 0.4")
    assert parsed.values == {"variant": 3, "cfg-adjust": 0.4}
    assert sum("deprecated" in w for w in parsed.warnings) == 2


def test_valid_prompt_has_no_warnings():
    parsed = parse_inline_prompt("a cat on a roof --no dogs --seed 5 --aspect 3:2 --portrait --d high --u")
    assert parsed.warnings == []


def test_differences_are_documented():
    """The parser's deliberate differences from the reference are listed where README points to them."""
    from pathlib import Path

    numerics = (Path(__file__).resolve().parent.parent / "docs" / "numerics.md").read_text(encoding="utf-8")
    section = numerics.split("\n## Deliberate differences\n", 1)[1].split("\n## ", 1)[0]
    for topic in ("`--aspect W:1`", "A bare `--upscale`", "`--refine` text is joined", "case-insensitive", "1:6",
                  "`--batch-size` above 16", "`--seed -1`"):
        assert topic in section


ARG_NAMES = sorted(grammar.CANONICAL_NAME) + ["", "x", "SEED", "Aspect"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text):
    parsed = parse_inline_prompt(text)
    assert isinstance(parsed.prompt, str)
    assert all(isinstance(w, str) for w in parsed.warnings)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20), st.lists(st.tuples(st.sampled_from(ARG_NAMES), st.one_of(
    st.text(max_size=12), st.sampled_from(["1", "-1", "+3", "3:2", "2:1", "0:0", "random", "on", "high", "1e9",
                                           "9" * 40, "1.5", "!x", "HIGH"]))), max_size=8))
def test_argument_like_text_never_raises(prompt, arguments):
    text = prompt + "".join(f" --{name} {value}" for name, value in arguments)
    parsed = parse_inline_prompt(text)
    for name in parsed.values:
        assert name in {spec.name for spec in ARGUMENTS}

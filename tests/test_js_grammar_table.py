"""The prompt-box JS and the Python prompt parser agree: same arguments, aliases, kinds and level words, and every
value the Ctrl+Up/Down keys write is one the parser accepts (without a warning) with the meaning the key promised."""

from __future__ import annotations

from fractions import Fraction

import pytest

from js.node_logic import NODE, call_many
from tinybreaker_ext.params import DETAIL_LEVEL_WORDS, UPSCALE_NOISE_WORDS
from tinybreaker_ext.prompt import grammar
from tinybreaker_ext.prompt.grammar import parse_inline_prompt
from tinybreaker_ext.prompt.sizes import parse_aspect

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (needed to run the prompt-box JS)")

SPEC_ASPECT_CYCLE = ["1:1", "4:3", "3:2", "16:10", "16:9", "2:1", "21:9", "12:5", "70:27", "32:9"]
SPEC_AUTOCOMPLETE = ["no", "refine", "seed", "cfg-shift", "image-shift", "aspect", "landscape", "portrait", "medium",
                     "upscale", "upscale-noise", "batch-size", "detail-level"]


@pytest.fixture(scope="module")
def js_tables():
    return call_many([("constants", [])])[0]


def test_js_argument_table_matches_the_python_grammar(js_tables):
    python_table = [(a.name, list(a.aliases), a.kind, a.deprecated) for a in grammar.ARGUMENTS]
    js_table = [(a["name"], a["aliases"], a["kind"], bool(a.get("deprecated", False))) for a in js_tables["ARGUMENTS"]]
    assert js_table == python_table


def test_js_level_words_match_both_python_level_tables(js_tables):
    assert js_tables["LEVEL_WORDS"] == list(DETAIL_LEVEL_WORDS) == list(UPSCALE_NOISE_WORDS)


def test_completion_offers_every_usable_argument_reference_order_first(js_tables):
    names = js_tables["COMPLETION_NAMES"]
    usable = {a.name for a in grammar.ARGUMENTS if not a.deprecated and a.kind != "ignored"}
    assert len(names) == len(set(names)) and set(names) == usable
    assert names[:len(SPEC_AUTOCOMPLETE)] == SPEC_AUTOCOMPLETE


def test_aspect_cycle_is_the_reference_list_and_the_parser_reads_each_entry(js_tables):
    assert js_tables["ASPECT_CYCLE"] == SPEC_ASPECT_CYCLE and js_tables["DEFAULT_ASPECT"] == "4:3"
    ratios = [Fraction(*parse_aspect(value)) for value in SPEC_ASPECT_CYCLE]
    assert ratios == sorted(ratios)


def test_every_name_the_js_knows_is_a_python_name(js_tables):
    for argument in js_tables["ARGUMENTS"]:
        for written in [argument["name"], *argument["aliases"]]:
            assert grammar.CANONICAL_NAME[written] == argument["name"]


# (argument, first value, expected range of parsed values). Each is stepped 25 times up and 25 times down in JS.
WALKS = [
    ("seed", "5", lambda v: isinstance(v, int) and v >= 1),
    ("cfg-shift", "+3", lambda v: isinstance(v, int) and -20 <= v <= 20),
    ("image-shift", "2", lambda v: isinstance(v, int) and v >= 0),
    ("upscale-noise", "1", lambda v: isinstance(v, int) and -5 <= v <= 5),
    ("upscale-noise", "low", lambda v: v in UPSCALE_NOISE_WORDS),
    ("detail-level", "-2", lambda v: isinstance(v, int) and -9 <= v <= 9),
    ("detail-level", "normal", lambda v: v in DETAIL_LEVEL_WORDS),
    ("batch-size", "2", lambda v: isinstance(v, int) and v >= 1),
    ("upscale", "on", lambda v: isinstance(v, bool) or v in ("upscaler", "enhancer")),
    ("upscale", "enhancer", lambda v: isinstance(v, bool) or v in ("upscaler", "enhancer")),
    ("aspect", "16:9", lambda v: f"{v[0]}:{v[1]}" in SPEC_ASPECT_CYCLE),
    # tall ratios stay tall until the walk passes 1:1, which has no orientation to keep
    ("aspect", "9:16", lambda v: f"{max(v)}:{min(v)}" in SPEC_ASPECT_CYCLE),
]


def _walks(name: str, first: str, steps: int = 25) -> list[str]:
    """The texts after each of `steps` Ctrl+Up presses, then after each of `steps` Ctrl+Down presses."""
    start = f"a cat --{name} {first}"
    up, down = call_many([("walkSteps", [start, 1, steps]), ("walkSteps", [start, -1, steps])])
    return up + down


@pytest.mark.parametrize("name,first,in_range", WALKS, ids=[f"{w[0]}={w[1]}" for w in WALKS])
def test_values_written_by_the_keys_parse_cleanly_in_python(name, first, in_range):
    seen = set()
    for text in _walks(name, first):
        parsed = parse_inline_prompt(text)
        assert parsed.warnings == [], text
        assert parsed.prompt == "a cat"
        value = parsed.values[name]
        assert in_range(value), text
        seen.add(text)
    assert len(seen) >= 2  # the walk really moved


def test_a_cfg_shift_step_moves_the_parsed_value_by_exactly_one():
    texts = call_many([("walkSteps", ["a cat --c -3", 1, 6])])[0]
    assert [parse_inline_prompt(t).values["cfg-shift"] for t in texts] == [-2, -1, 0, 1, 2, 3]

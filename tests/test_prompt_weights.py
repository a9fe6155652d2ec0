"""ComfyUI weighting grammar: expected segments written out by hand from ComfyUI's rules
(docs/numerics.md "Prompt weighting")."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinybreaker_ext.prompt_weights import parse_weighted_segments


@pytest.mark.parametrize("text, expected", [
    ("a cat", [("a cat", 1.0)]),
    ("", []),
    ("a (cat:1.5) dog", [("a ", 1.0), ("cat", 1.5), (" dog", 1.0)]),
    ("(cat)", [("cat", 1.1)]),
    ("((cat:1.5))", [("cat", 1.5)]),  # an explicit weight replaces the nesting factor
    ("(a (b:0.5) c:2)", [("a ", 2.0), ("b", 0.5), (" c", 2.0)]),
    ("(a (b) c:2)", [("a ", 2.0), ("b", 2.0 * 1.1), (" c", 2.0)]),
    ("(a:b)", [("a:b", 1.1)]),  # not a number: the colon stays text
    ("(:1.5)", [(":1.5", 1.1)]),  # a colon at position 0 is not a weight
    ("(a: 1.5 )", [("a", 1.5)]),  # float() accepts surrounding spaces
    ("[cat] (dog:0.8)", [("[cat] ", 1.0), ("dog", 0.8)]),
    ("a \\(b\\) c", [("a (b) c", 1.0)]),
    ("\\((cat:1.2)\\)", [("(", 1.0), ("cat", 1.2), (")", 1.0)]),
    ("a (b (c:1.2) d", [("a ", 1.0), ("(b (c:1.2) d", 1.0)]),  # unbalanced '(' → rest is literal
    ("a) (b:1.3)", [("a) (b:1.3)", 1.0)]),  # a stray ')' also swallows later groups
    ("a (b (c:1.2)", [("a ", 1.0), ("b ", 1.2), ("(c", 1.2)]),  # ComfyUI quirk: an unclosed group ending in ')'
    ("(a)(b)", [("a", 1.1), ("b", 1.1)]),
    ("()", []),
])
def test_weights_and_segments(text, expected):
    assert parse_weighted_segments(text) == expected


def test_nested_levels_multiply_by_1_1_each():
    [(text, weight)] = parse_weighted_segments("(((cat)))")
    assert text == "cat"
    assert weight == 1.1 * 1.1 * 1.1


@pytest.mark.parametrize("text, expected", [
    ("a photo embedding:foo of a cat", [("a photo", 1.0), ("of a cat", 1.0)]),
    ("embedding:foo", []),
    ("embedding:foo, bar", [(", bar", 1.0)]),  # trailing commas of the name are kept as text
    ("a\nembedding:foo   bar  baz", [("a", 1.0), ("bar baz", 1.0)]),  # leftover words re-joined by one space
    ("(embedding:foo:1.2) x", [(" x", 1.0)]),
    ("cat embedding:", [("cat", 1.0)]),  # bare directive (ComfyUI raises IndexError) is dropped
    ("xembedding:foo", [("xembedding:foo", 1.0)]),  # only at a segment start or after a space/newline
])
def test_embedding_directives_are_dropped(text, expected):
    assert parse_weighted_segments(text) == expected


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(alphabet="()\\:.,1e ab[]\nmbding", max_size=60)))
def test_never_raises_on_arbitrary_text(text):
    segments = parse_weighted_segments(text)
    assert all(isinstance(t, str) and isinstance(w, float) for t, w in segments)
    assert all(t != "" for t, _ in segments)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab ,.[]\n", max_size=40))
def test_text_without_syntax_is_one_segment(text):
    assert parse_weighted_segments(text) == ([(text, 1.0)] if text else [])


# Balanced prompts built from a tree, with the expected segments computed from the rules independently.
_words = st.text(alphabet="ab ,.", min_size=1, max_size=4)
_tree = st.recursive(
    _words,
    lambda children: st.tuples(st.lists(children, min_size=1, max_size=3),
                               st.one_of(st.none(), st.sampled_from([0.5, 1.2, 1.5, 2.0]))),
    max_leaves=8,
)


def _render(node) -> str:
    if isinstance(node, str):
        return node
    children, weight = node
    inner = "".join(_render(child) for child in children)
    return "(" + inner + (f":{weight}" if weight is not None else "") + ")"


def _expected(nodes, weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    run = ""
    for node in nodes:
        if isinstance(node, str):
            run += node
            continue
        if run:
            out.append((run, weight))
            run = ""
        children, explicit = node
        out += _expected(children, explicit if explicit is not None else weight * 1.1)
    if run:
        out.append((run, weight))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_tree, min_size=1, max_size=4))
def test_balanced_prompts_match_the_rules(nodes):
    text = "".join(_render(node) for node in nodes)
    got = parse_weighted_segments(text)
    expected = _expected(nodes, 1.0)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert all(math.isclose(a, b, rel_tol=1e-12) for (_, a), (_, b) in zip(got, expected))

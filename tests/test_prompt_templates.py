import pytest
from hypothesis import given, strategies as st

from tinybreaker_ext.prompt.templates import apply_template, refiner_text


@pytest.mark.parametrize("template, value, expected", [
    # the example of docs/numerics.md "Style templates"
    ("A detailed iPhone photo{. $@}. Bokeh", "a cat", "A detailed iPhone photo. a cat. Bokeh"),
    ("A detailed iPhone photo{. $@}. Bokeh", "", "A detailed iPhone photo. Bokeh"),
    # no template, or no placeholder: the value alone
    ("", "a cat", "a cat"),
    (None, "a cat", "a cat"),
    ("A photo without placeholder", "a cat", "a cat"),
    ("A photo without placeholder", "", ""),
    # placeholder without a block: plain substitution
    ("A photo of $@ at night", "a cat", "A photo of a cat at night"),
    ("A photo of $@ at night", "", "A photo of  at night"),
    # block opening before the placeholder and closing after it
    ("{$@ .}bokeh", "a cat", "a cat .bokeh"),
    ("{$@ .}bokeh", "", "bokeh"),
    ("Pixel art of {$@}, retro", "a cat", "Pixel art of a cat, retro"),
    ("Pixel art of {$@}, retro", "", "Pixel art of , retro"),
    ("neg{, $@}", "ugly", "neg, ugly"),
    ("neg{, $@}", "", "neg"),
    # only one brace present: braces kept literally
    ("A {photo $@ here", "a cat", "A {photo a cat here"),
    ("A photo $@} here", "a cat", "A photo a cat} here"),
    # a `}` between the block's `{` and the placeholder: not a block
    ("{x} and $@ then}", "a cat", "{x} and a cat then}"),
    # docs/numerics.md "Style templates": any `{` after the block's `}` keeps the braces literally
    ("A photo {. $@} and {y}", "a cat", "A photo {. a cat} and {y}"),
    ("A photo {. $@} and {y}", "", "A photo {. } and {y}"),
    # a `{` before the block does not matter
    ("{z} A photo{. $@}. end", "a cat", "{z} A photo. a cat. end"),
    # only the first placeholder is replaced
    ("$@ and $@", "a cat", "a cat and $@"),
])
def test_template_substitution_follows_the_reference_rules(template, value, expected):
    assert apply_template(template, value) == expected


@given(st.text(max_size=60), st.text(max_size=30))
def test_template_never_raises_and_keeps_a_non_empty_value(template, value):
    result = apply_template(template, value)
    assert isinstance(result, str)
    if value:
        assert value in result


@given(st.text(alphabet="ab .,", max_size=20), st.text(alphabet="ab .,", max_size=20), st.text(alphabet="xy ", min_size=1, max_size=10))
def test_clean_block_keeps_its_text_only_when_the_value_is_not_empty(before, inside_tail, value):
    template = before + "{" + ". $@" + inside_tail + "}" + " end"
    assert apply_template(template, value) == before + ". " + value + inside_tail + " end"
    assert apply_template(template, "") == before + " end"


@pytest.mark.parametrize("refine, prompt, expected", [
    ("a dog", "a cat", "a dog. a cat"),       # fixed: one space between refine text and prompt
    ("a dog.", "a cat", "a dog. a cat"),
    ("!a dog", "a cat", "a dog."),
    ("!a dog.", "a cat", "a dog."),
    ("a dog", "", "a dog."),
    ("", "a cat", "a cat"),                   # empty --refine counts as absent
    ("!", "a cat", ""),
])
def test_refiner_text(refine, prompt, expected):
    assert refiner_text(refine, prompt) == expected

"""The prompt-box logic of javascript/tinybreaker_prompt.js, run in Node: Ctrl+Up/Down steps, Ctrl+Right completion,
highlight ranges. Expected values come from the reference editor's hints (docs/numerics.md "Inline prompt arguments"):
seed >=1, cfg-shift -20..+20 written with '+', image-shift >=0, upscale-noise -5..+5 or levels, detail-level -9..+9
or levels, batch >=1, the aspect list 1:1, 4:3, 3:2, 16:10, 16:9, 2:1, 21:9, 12:5, 70:27, 32:9 (default 4:3).

Notation: `|` is the caret, `[...]` a selection, in the text before and after the key.
"""

from __future__ import annotations

import html
import random
import re

import pytest

from js.node_logic import NODE, call_many

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (needed to run the prompt-box JS)")


def parse_marked(marked: str) -> tuple[str, int, int]:
    if "|" in marked:
        caret = marked.index("|")
        return marked.replace("|", "", 1), caret, caret
    start = marked.index("[")
    end = marked.index("]") - 1
    return marked.replace("[", "", 1).replace("]", "", 1), start, end


def mark(text: str, start: int, end: int) -> str:
    if start == end:
        return text[:start] + "|" + text[start:]
    return text[:start] + "[" + text[start:end] + "]" + text[end:]


UP, DOWN = 1, -1
SAME = "same"  # the key is TinyBreaker's, but nothing changes (a limit, or an argument without steps)

STEP_CASES = [
    # seed: >= 1, "random" and an empty value become 1, any size (64-bit seeds keep every digit)
    ("--seed 7|", UP, "--seed [8]"),
    ("a cat --se|ed 7", UP, "a cat --seed [8]"),
    ("|--seed 7", UP, "--seed [8]"),
    ("--seed 7|", DOWN, "--seed [6]"),
    ("--seed 1|", DOWN, SAME),
    ("--seed random|", UP, "--seed [1]"),
    ("--seed -1|", UP, "--seed [1]"),
    ("--s 41|", UP, "--s [42]"),
    ("--SEED 7|", UP, "--SEED [8]"),
    ("--seed 9007199254740993|", UP, "--seed [9007199254740994]"),
    ("--seed 18446744073709551615|", UP, SAME),
    ("--seed|", UP, "--seed [1]"),
    ("--seed |", UP, "--seed [1]"),
    ("--seed| cat", UP, "--seed [1] cat"),
    ("--se|ed--aspect 3:2", UP, "--seed [1] --aspect 3:2"),
    ("--seed 7|,", UP, "--seed [8],"),
    ("a cat\n--seed 7|\n--aspect 1:1", UP, "a cat\n--seed [8]\n--aspect 1:1"),
    # cfg-shift: -20..+20, positive numbers with '+', zero without
    ("--cfg-shift +1|", DOWN, "--cfg-shift [0]"),
    ("--cfg-shift 0|", DOWN, "--cfg-shift [-1]"),
    ("--cfg-shift -1|", UP, "--cfg-shift [0]"),
    ("--cfg-shift 0|", UP, "--cfg-shift [+1]"),
    ("--c 3|", UP, "--c [+4]"),
    ("--cfg-shift +20|", UP, SAME),
    ("--cfg-shift -20|", DOWN, SAME),
    ("--cfg-shift 35|", DOWN, "--cfg-shift [+20]"),
    ("--cfg-shift|", UP, "--cfg-shift [0]"),
    # image-shift: >= 0, no sign
    ("--image-shift 0|", DOWN, SAME),
    ("--i 0|", UP, "--i [1]"),
    # upscale-noise: -5..+5 or a level word (levels stop at both ends, any case)
    ("--upscale-noise +5|", UP, SAME),
    ("--upscale-noise -4|", DOWN, "--upscale-noise [-5]"),
    ("--upscale-noise low|", UP, "--upscale-noise [normal]"),
    ("--upscale-noise none|", DOWN, SAME),
    ("--upscale-noise HIGH|", UP, "--upscale-noise [veryhigh]"),
    # detail-level: -9..+9 or a level word
    ("--detail-level high|", UP, "--detail-level [veryhigh]"),
    ("--detail-level veryhigh|", UP, "--detail-level [maximum]"),
    ("--detail-level maximum|", UP, SAME),
    ("--detail-level minimal|", DOWN, "--detail-level [none]"),
    ("--d 8|", UP, "--d [+9]"),
    ("--d +9|", UP, SAME),
    ("--detail-level -9|", DOWN, SAME),
    ("--detail-level 50|", DOWN, "--detail-level [+9]"),
    # batch-size: >= 1
    ("--batch-size 1|", DOWN, SAME),
    ("--b 2|", UP, "--b [3]"),
    # aspect: the list in a circle; unlisted ratios go to the next listed one; tall ratios stay tall
    ("--aspect 16:9|", UP, "--aspect [2:1]"),
    ("--aspect 16:9|", DOWN, "--aspect [16:10]"),
    ("--a 32:9|", UP, "--a [1:1]"),
    ("--aspect 1:1|", DOWN, "--aspect [32:9]"),
    ("--aspect 9:16|", UP, "--aspect [1:2]"),
    ("--aspect 3:4|", DOWN, "--aspect [1:1]"),
    ("--aspect 5:4|", UP, "--aspect [4:3]"),
    ("--aspect 5:4|", DOWN, "--aspect [1:1]"),
    ("--aspect 8:6|", UP, "--aspect [3:2]"),
    ("--aspect 40:9|", UP, "--aspect [1:1]"),
    ("--aspect|", UP, "--aspect [4:3]"),
    ("--aspect| wide", UP, "--aspect [4:3] wide"),
    # upscale: on/off; a bare --upscale means on
    ("--upscale on|", UP, "--upscale [off]"),
    ("--upscale off|", DOWN, "--upscale [on]"),
    ("--upscale|", UP, "--upscale [off]"),
    ("--u yes|", UP, "--u [off]"),
    # flags: orientation flips, size moves between medium and large
    ("--landscape|", UP, "--[portrait]"),
    ("--port|rait", DOWN, "--[landscape]"),
    ("--medium|", UP, "--[large]"),
    ("--large|", UP, SAME),
    ("--large|", DOWN, "--[medium]"),
    ("--small|", UP, "--[large]"),
    # arguments without steps keep the key, so the host does not turn them into `(--style x:1.1)`
    ("--style Pho|to", UP, SAME),
    ("--sed| 3", UP, SAME),
    ("--variant 3|", UP, SAME),
    ("--cfg-adjust 0.5|", UP, SAME),
]

NOT_OURS_CASES = [  # the host's emphasis editing should run
    "a c|at on a roof",
    "a cat --no do|gs",
    "a cat --negative do|gs",
    "--refine a d|og",
    "--prompt a d|og",
    "a cat --seed 7 and mo|re",
    "a cat --seed 7 |",
    "--seed 7\na d|og",
    "--landscape a d|og",
    "--sed 3 a d|og",
    "a -- b|",
    "a cat| --seed 7",
    "[--seed 7 cat]",
    "",
]


@pytest.fixture(scope="module")
def step_results():
    calls = []
    for marked, delta, _ in STEP_CASES:
        text, start, end = parse_marked(marked)
        calls.append(("stepArgumentAt", [text, start, end, delta]))
    for marked in NOT_OURS_CASES:
        text, start, end = parse_marked(marked) if marked else ("", 0, 0)
        calls += [("stepArgumentAt", [text, start, end, UP]), ("stepArgumentAt", [text, start, end, DOWN])]
    return call_many(calls)


@pytest.mark.parametrize("index", range(len(STEP_CASES)), ids=[f"{c[0]!r}{'+' if c[1] > 0 else '-'}" for c in STEP_CASES])
def test_step_changes_the_value_under_the_cursor(step_results, index):
    marked, delta, expected = STEP_CASES[index]
    text, start, _ = parse_marked(marked)
    edit = step_results[index]
    assert edit is not None and edit["handled"] is True
    if expected == SAME:
        assert edit["changed"] is False and edit["text"] == text
        return
    assert edit["changed"] is True
    assert mark(edit["text"], edit["selectionStart"], edit["selectionEnd"]) == expected
    # The edit is also described as one splice, which the browser applies with insertText (keeps undo).
    assert text[:edit["start"]] + edit["insert"] + text[edit["end"]:] == edit["text"]


@pytest.mark.parametrize("index", range(len(NOT_OURS_CASES)), ids=[repr(c) for c in NOT_OURS_CASES])
def test_step_leaves_text_that_is_not_a_param_to_the_host(step_results, index):
    first = len(STEP_CASES) + 2 * index
    assert step_results[first] is None and step_results[first + 1] is None


def test_aspect_steps_walk_the_reference_list_in_a_circle():
    reference = ["1:1", "4:3", "3:2", "16:10", "16:9", "2:1", "21:9", "12:5", "70:27", "32:9"]
    up = call_many([("stepValue", ["aspect", value, UP]) for value in reference])
    down = call_many([("stepValue", ["a", value, DOWN]) for value in reference])
    assert up == reference[1:] + reference[:1]
    assert down == reference[-1:] + reference[:-1]


def test_level_words_step_through_the_whole_scale_and_stop_at_the_ends():
    levels = ["none", "minimal", "low", "normal", "high", "veryhigh", "maximum"]
    calls = [("stepValue", [name, word, delta]) for name in ("detail-level", "upscale-noise")
             for word in levels for delta in (UP, DOWN)]
    results = iter(call_many(calls))
    for _name in ("detail-level", "upscale-noise"):
        for index in range(len(levels)):
            assert next(results) == levels[min(index + 1, 6)]
            assert next(results) == levels[max(index - 1, 0)]


COMPLETION_CASES = [
    ("a cat --asp|", "a cat --aspect |"),
    ("a cat --ASP|", "a cat --aspect |"),
    ("--asp| 3:2", "--aspect |3:2"),
    ("--asp|\n--seed 3", "--aspect |\n--seed 3"),
    ("--s|", "--seed |"),
    ("--st|", "--style |"),
    ("--sm|", "--small |"),
    ("--l|", "--landscape |"),
    ("--lar|", "--large |"),
    ("--n|", "--no |"),
    ("--c|", "--cfg-shift |"),
    ("--de|", "--detail-level |"),
    ("--upscale|", "--upscale-noise |"),
    ("--seed 3 --b|", "--seed 3 --batch-size |"),
]
NO_COMPLETION_CASES = ["--aspect|", "--xyz|", "--as|p", "a ca|t", "--|", "--asp |", "--variant|", "--neg|"]


@pytest.fixture(scope="module")
def completion_results():
    cases = [parse_marked(m) for m, _ in COMPLETION_CASES] + [parse_marked(m) for m in NO_COMPLETION_CASES]
    return call_many([("completeNameAt", [text, caret]) for text, caret, _ in cases])


@pytest.mark.parametrize("index", range(len(COMPLETION_CASES)), ids=[c[0] for c in COMPLETION_CASES])
def test_ctrl_right_completes_a_partly_typed_name(completion_results, index):
    edit = completion_results[index]
    assert edit is not None
    assert mark(edit["text"], edit["selectionStart"], edit["selectionEnd"]) == COMPLETION_CASES[index][1]


@pytest.mark.parametrize("index", range(len(NO_COMPLETION_CASES)), ids=NO_COMPLETION_CASES)
def test_ctrl_right_does_nothing_without_a_completion(completion_results, index):
    assert completion_results[len(COMPLETION_CASES) + index] is None


def test_highlight_ranges_cover_name_and_value_but_not_free_text():
    text = "a cat --seed 7 --no dogs, cats --sed 3 --aspect 3:2\n--landscape -- x --style My Style"
    ranges = call_many([("highlightRanges", [text])])[0]
    marked = [(text[r["start"]:r["end"]], r["name"], r["known"]) for r in ranges]
    assert marked == [
        ("--seed 7", "seed", True), ("--no", "no", True), ("--sed", None, False), ("--aspect 3:2", "aspect", True),
        ("--landscape", "landscape", True), ("--style My Style", "style", True),
    ]
    seed = ranges[0]
    assert text[seed["start"]:seed["nameEnd"]] == "--seed" and text[seed["valueStart"]:seed["end"]] == "7"


def _random_prompts(count: int) -> list[str]:
    pieces = ["--seed", "--aspect", " 16:9", "--no", " a cat", "--", "-", " ", "\n", "<b>", "&amp;", '"', "7",
              "--d", " high", "--sed", "x", "\t", "--landscape", "é"]
    rng = random.Random(5)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def test_highlight_html_keeps_every_character_and_escapes_markup():
    texts = _random_prompts(300) + ["a <cat> & --seed 7 \"x\""]
    outputs = call_many([("highlightHtml", [text]) for text in texts])
    for text, output in zip(texts, outputs):
        assert html.unescape(re.sub(r"<[^>]*>", "", output)) == text
        assert "<b>" not in re.sub(r"</?(mark|span)[^>]*>", "", output)


def test_steps_on_random_prompts_only_splice_the_argument_under_the_cursor():
    texts = _random_prompts(200)
    rng = random.Random(7)
    cases = [(text, rng.randint(0, len(text)), rng.choice((UP, DOWN))) for text in texts]
    edits = call_many([("stepArgumentAt", [t, c, c, d]) for t, c, d in cases])
    handled = 0
    for (text, caret, _), edit in zip(cases, edits):
        if edit is None:
            continue
        handled += 1
        assert text[:edit["start"]] + edit["insert"] + text[edit["end"]:] == edit["text"]
        # Nothing outside the argument's own line changes, and no character of the user's is lost.
        line_start = text.rfind("\n", 0, caret) + 1
        assert edit["start"] >= line_start - 2
        assert "\n" not in text[edit["start"]:edit["end"]]
    assert handled > 20

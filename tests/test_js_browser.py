"""The prompt-box keys and highlighting in a real headless Chromium, on a page built like the hosts' txt2img tab:
the host's helpers (stand-in), a stand-in for the host's Ctrl+Up/Down emphasis editing registered before our
scripts, then every javascript/*.js of the extension and style.css. Keys are sent as real (trusted) key events over
the Chrome DevTools Protocol.

Needs Debian's chromium (`apt-get update && apt-get install -y chromium`) and the `websocket-client` package; skips
without them. Set TINYBREAKER_SCREENSHOT=/some/file.png to keep the screenshot of the highlighting.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from js.headless_chromium import CHROMIUM, CTRL

REPO = Path(__file__).resolve().parents[1]
PAGE = "tests/js/txt2img_page.html"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (install: apt-get update && apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None,
                       reason="the websocket-client package is not installed (pip install websocket-client)"),
]


@pytest.fixture(scope="module")
def page():
    from js.headless_chromium import HeadlessChromium, serve_extension_page

    server, url = serve_extension_page(REPO, PAGE)
    try:
        with HeadlessChromium() as browser:
            browser.open(url)
            assert browser.wait_for("window.tbTest && window.tbTest.ready()"), "the highlight layer never appeared"
            yield browser
    finally:
        server.shutdown()
        server.server_close()


def set_prompt(page, marked: str) -> None:
    """Sets the prompt as gradio does (no event); `|` marks the caret."""
    caret = marked.index("|")
    page.evaluate(f"tbTest.setPrompt({marked.replace('|', '', 1)!r}, {caret})")


def press(page, key: str, times: int = 1, modifiers: int = CTRL) -> dict:
    for _ in range(times):
        page.press(key, modifiers)
    return page.evaluate("tbTest.state()")


def test_ctrl_up_steps_the_seed_and_tells_gradio(page):
    set_prompt(page, "a cat --seed 7|")
    state = press(page, "ArrowUp")
    assert state["value"] == "a cat --seed 8"
    assert (state["selectionStart"], state["selectionEnd"]) == (13, 14)
    assert state["hostCalls"] == 0  # we handled it, so the host's emphasis editing never saw the key
    assert state["inputEvents"] and state["inputEvents"][-1]["value"] == "a cat --seed 8"


def test_ctrl_down_steps_cfg_shift_through_zero(page):
    set_prompt(page, "a cat --cfg-shift +1|")
    assert press(page, "ArrowDown")["value"] == "a cat --cfg-shift 0"
    state = press(page, "ArrowDown")
    assert state["value"] == "a cat --cfg-shift -1" and state["hostCalls"] == 0


def test_level_words_step_and_stop_at_maximum(page):
    set_prompt(page, "a cat --detail-level high|")
    values = [press(page, "ArrowUp")["value"] for _ in range(3)] + [press(page, "ArrowDown")["value"]]
    assert [v.rsplit(" ", 1)[1] for v in values] == ["veryhigh", "maximum", "maximum", "veryhigh"]


def test_aspect_cycles_through_the_list(page):
    set_prompt(page, "a cat --aspect 16:9| --seed 3")
    ups = [press(page, "ArrowUp")["value"] for _ in range(2)]
    assert ups == ["a cat --aspect 2:1 --seed 3", "a cat --aspect 21:9 --seed 3"]
    assert press(page, "ArrowDown", times=2)["value"] == "a cat --aspect 16:9 --seed 3"


def test_ctrl_right_completes_the_name_and_typing_goes_on(page):
    set_prompt(page, "a cat --asp|")
    state = press(page, "ArrowRight")
    assert state["value"] == "a cat --aspect " and state["selectionStart"] == state["selectionEnd"] == 15
    page.type_text("3:2")
    state = page.evaluate("tbTest.state()")
    assert state["value"] == "a cat --aspect 3:2" and state["hostCalls"] == 0


def test_ctrl_right_elsewhere_keeps_the_browsers_word_jump(page):
    set_prompt(page, "|a cat --seed 7")
    state = press(page, "ArrowRight")
    assert state["value"] == "a cat --seed 7"
    assert state["selectionStart"] > 0  # the default action (move by a word) was not prevented


def test_ctrl_up_on_plain_words_runs_the_hosts_emphasis_editing(page):
    set_prompt(page, "a c|at, blue sky --seed 7")
    state = press(page, "ArrowUp")
    assert state["hostCalls"] == 1
    assert state["value"] == "a (cat:1.1), blue sky --seed 7"


def test_ctrl_up_in_negative_text_runs_the_hosts_emphasis_editing(page):
    set_prompt(page, "a cat --no do|gs")
    state = press(page, "ArrowUp")
    assert state["hostCalls"] == 1 and state["value"] == "a cat --no (dogs:1.1)"


def test_a_step_can_be_undone_with_ctrl_z(page):
    set_prompt(page, "a cat --seed 7|")
    assert press(page, "ArrowUp")["value"] == "a cat --seed 8"
    assert press(page, "z")["value"] == "a cat --seed 7"


def test_highlighting_marks_params_and_follows_every_change(page):
    set_prompt(page, "a cat --seed 7 --no dogs --sed 2|")
    # gradio sets values without an event: the layer catches up on its own
    marks = page.wait_for("tbTest.marks().length === 3 && tbTest.marks()")
    assert marks == [
        {"text": "--seed 7", "known": True, "name": "--seed", "value": "7"},
        {"text": "--no", "known": True, "name": "--no", "value": None},
        {"text": "--sed", "known": False, "name": "--sed", "value": None},
    ]
    page.evaluate("tbTest.textarea().setSelectionRange(13, 13)")
    page.press("ArrowUp", CTRL)
    assert page.evaluate("tbTest.marks()[0].text") == "--seed 8"  # updated at once, by the input event


LONG_PROMPT = ("a photo of a cat sitting on a red roof at sunset, highly detailed, soft light --seed 7 --aspect 16:9 "
               "--detail-level high --cfg-shift +2 --sed 3 --no people, text\n--landscape --upscale on --batch-size 2")


def test_highlight_layer_lies_exactly_over_the_textarea_and_wraps_like_it(page):
    set_prompt(page, "|" + LONG_PROMPT + "\n" * 12 + "--seed 99")
    assert page.wait_for("tbTest.marks().length === 10")
    geometry = page.evaluate("tbTest.geometry()")
    for side in ("left", "top", "width", "height"):
        assert abs(geometry["layer"][side] - geometry["textareaClient"][side]) < 0.5, side
    # Same text box and same line breaks give the same content height (scrollHeight adds the padding).
    text_height = geometry["textareaScrollHeight"] - geometry["paddingTop"] - geometry["paddingBottom"]
    assert geometry["textareaScrollHeight"] > geometry["textareaClient"]["height"]  # really overflowing
    assert abs(geometry["layerContentHeight"] - text_height) <= 1


def test_highlight_layer_scrolls_with_the_textarea(page):
    set_prompt(page, "|" + LONG_PROMPT + "\n" * 12 + "--seed 99")
    assert page.wait_for("tbTest.marks().length === 10")
    page.evaluate("(() => { const t = tbTest.textarea(); t.scrollTop = t.scrollHeight; })()")
    last_mark_visible = (
        "(() => { const g = tbTest.geometry(); const m = g.names[g.names.length - 1];"
        " return m.top >= g.layer.top && m.top + m.height <= g.layer.top + g.layer.height; })()")
    assert page.wait_for(last_mark_visible, timeout=2.0)


def _average_rgb(image, rect) -> tuple[float, float, float]:
    box = (int(rect["left"]) + 1, int(rect["top"]) + 1,
           int(rect["left"] + rect["width"]) - 1, int(rect["top"] + rect["height"]) - 1)
    pixels = list(image.crop(box).convert("RGB").getdata())
    return tuple(sum(p[i] for p in pixels) / len(pixels) for i in range(3))


def test_screenshot_shows_blue_names_and_orange_values(page, tmp_path):
    from PIL import Image

    set_prompt(page, "|" + LONG_PROMPT)
    assert page.wait_for("tbTest.marks().length === 9")
    geometry = page.evaluate("tbTest.geometry()")
    path = page.screenshot(tmp_path / "prompt_highlight.png")
    if os.environ.get("TINYBREAKER_SCREENSHOT"):
        shutil.copyfile(path, os.environ["TINYBREAKER_SCREENSHOT"])
    image = Image.open(path)
    seed_name, seed_value = geometry["names"][0], geometry["values"][0]
    red, green, blue = _average_rgb(image, seed_name)
    assert blue > red + 20, (red, green, blue)  # style.css: names tinted blue
    red, green, blue = _average_rgb(image, seed_value)
    assert red > blue + 30, (red, green, blue)  # values tinted orange
    plain = {"left": geometry["textareaClient"]["left"] + 2, "top": geometry["textareaClient"]["top"]
             + geometry["textareaClient"]["height"] - 12, "width": 40, "height": 8}
    red, green, blue = _average_rgb(image, plain)
    assert abs(red - blue) < 12, (red, green, blue)  # untouched background stays neutral

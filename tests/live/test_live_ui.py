"""The prompt-box keys and highlighting on a real running WebUI page (A1111 1.10, Forge or reForge) with TinyBreaker
installed, in headless Chromium: the host's real gradio DOM and its real Ctrl+Up/Down emphasis editing.

Skipped unless TINYBREAKER_LIVE_URL is set (e.g. http://127.0.0.1:7860); also needs Debian's chromium
(`apt-get update && apt-get install -y chromium`) and the websocket-client package. The page is only loaded, nothing
is generated. TINYBREAKER_SCREENSHOT=/some/file.png keeps a screenshot of the prompt.
"""

from __future__ import annotations

import importlib.util
import os
import time

import pytest

from js.headless_chromium import CHROMIUM, CTRL

BASE_URL = os.environ.get("TINYBREAKER_LIVE_URL", "").rstrip("/")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (install: apt-get update && apt-get install -y chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("websocket") is None,
                       reason="the websocket-client package is not installed (pip install websocket-client)"),
]

TEXTAREA = "gradioApp().querySelector('#txt2img_prompt textarea')"


@pytest.fixture(scope="module")
def page():
    from js.headless_chromium import HeadlessChromium

    with HeadlessChromium(width=1280, height=900, timeout=60) as browser:
        browser.open(BASE_URL + "/")
        ready = browser.wait_for(
            f"typeof gradioApp === 'function' && {TEXTAREA} !== null && window.TinyBreakerPrompt !== undefined"
            f" && {TEXTAREA}.parentElement.querySelector('.tinybreaker-highlight') !== null", timeout=90)
        assert ready, "the txt2img prompt or TinyBreaker's highlight layer never appeared"
        # The host's emphasis editing needs its settings, which arrive a moment after the UI.
        assert browser.wait_for("typeof opts === 'object' && opts.keyedit_delimiters !== undefined", timeout=60)
        yield browser


def set_prompt(page, marked: str) -> None:
    """Clears the prompt, then types the text for real (the host sees ordinary input), caret at `|`."""
    text, caret = marked.replace("|", "", 1), marked.index("|")
    page.evaluate(f"(() => {{ const t = {TEXTAREA}; t.focus(); t.select(); }})()")
    page.send("Input.insertText", text=text)
    page.evaluate(f"{TEXTAREA}.setSelectionRange({caret}, {caret})")


def prompt_value(page) -> str:
    return page.evaluate(f"{TEXTAREA}.value")


def test_ctrl_up_steps_a_param_in_the_real_page(page):
    set_prompt(page, "a red cube --seed 7| --aspect 16:9")
    page.press("ArrowUp", CTRL)
    assert prompt_value(page) == "a red cube --seed 8 --aspect 16:9"
    page.evaluate(f"{TEXTAREA}.setSelectionRange(30, 30)")
    page.press("ArrowUp", CTRL)
    assert prompt_value(page) == "a red cube --seed 8 --aspect 2:1"


def test_ctrl_right_completes_in_the_real_page(page):
    set_prompt(page, "a red cube --deta|")
    page.press("ArrowRight", CTRL)
    assert prompt_value(page) == "a red cube --detail-level "


def test_the_hosts_own_emphasis_editing_still_works_off_params(page):
    set_prompt(page, "a red cu|be --seed 7")
    page.press("ArrowUp", CTRL)
    assert prompt_value(page) == "a red (cube:1.1) --seed 7"


def test_highlight_layer_covers_the_real_textarea(page):
    set_prompt(page, "a red cube --seed 7 --sed 3|")
    time.sleep(0.4)
    marks = page.evaluate(
        f"Array.from({TEXTAREA}.parentElement.querySelectorAll('.tinybreaker-highlight mark'))"
        ".map((m) => m.textContent)")
    assert marks == ["--seed 7", "--sed"]
    offsets = page.evaluate(
        f"(() => {{ const t = {TEXTAREA}; const l = t.parentElement.querySelector('.tinybreaker-highlight');"
        " const a = t.getBoundingClientRect(), b = l.getBoundingClientRect();"
        " return [b.left - a.left - t.clientLeft, b.top - a.top - t.clientTop, b.width - t.clientWidth,"
        " b.height - t.clientHeight]; })()")
    assert all(abs(offset) < 0.5 for offset in offsets), offsets
    if os.environ.get("TINYBREAKER_SCREENSHOT"):
        page.screenshot(os.environ["TINYBREAKER_SCREENSHOT"])

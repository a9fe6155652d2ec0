"""The Tiny Upscaler's modes and upscale model on a real running WebUI: the enhancer keeps the requested size, a
pre-upscale with one of the host's own upscalers gives the enlarged size, an unknown upscaler is a 422 listing the
host's. With ``TINYBREAKER_LIVE_ESRGAN`` naming an ESRGAN-class upscaler the host lists (e.g. the tiny random one
of tests/builders/upscale_models.py dropped into ``<webui>/models/ESRGAN``), the pre-upscale also runs a real model.

    TINYBREAKER_LIVE_URL=http://127.0.0.1:7864 TINYBREAKER_LIVE_ESRGAN=tiny_esrgan_x4 \\
        python -m pytest tests/live/test_live_upscaler_modes.py
"""

from __future__ import annotations

import os

import pytest

from test_live_webui import BASE_URL, SIZE, call, decode_image, infotext_of, txt2img

pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set")]

ESRGAN = os.environ.get("TINYBREAKER_LIVE_ESRGAN", "")
UPSCALE = {"enabled": True, "upscale": True, "upscale_by": 1.5}
UPSCALED = round(SIZE * 1.5)


def image_of(result):
    return decode_image(result["images"][0])


def pixels(result):
    return image_of(result).convert("RGB").tobytes()


def test_the_options_offer_the_modes_and_the_hosts_upscalers():
    status, body = call("GET", "/tinybreaker/v1/options")
    assert status == 200 and body["version"] >= 3
    by_name = {field["name"]: field for field in body["fields"]}
    assert by_name["upscale_mode"]["choices"] == ["upscaler", "enhancer"]
    choices = by_name["upscale_model"]["choices"]
    assert choices[0] == "none" and "Lanczos" in choices and "None" not in choices
    if ESRGAN:
        assert ESRGAN in choices


def test_the_enhancer_returns_the_requested_size_re_detailed():
    status, plain = txt2img([{"enabled": True}])
    assert status == 200, plain
    status, enhanced = txt2img([{**UPSCALE, "upscale_mode": "enhancer"}])
    assert status == 200, enhanced
    assert image_of(enhanced).size == (SIZE, SIZE)
    assert "TinyBreaker upscale mode: enhancer" in infotext_of(enhanced)
    assert pixels(enhanced) != pixels(plain)


def test_the_enhancer_from_the_prompt():
    status, result = txt2img([{"enabled": True}], prompt="a red cube on a table --upscale enhancer")
    assert status == 200, result
    assert image_of(result).size == (SIZE, SIZE)
    assert "TinyBreaker upscale mode: enhancer" in infotext_of(result)


@pytest.mark.parametrize("upscaler", ["Lanczos"] + ([ESRGAN] if ESRGAN else []))
def test_a_hosts_upscaler_enlarges_before_the_tiles(upscaler):
    status, bilinear = txt2img([UPSCALE])
    assert status == 200, bilinear
    status, result = txt2img([{**UPSCALE, "upscale_model": upscaler}])
    assert status == 200, result
    assert image_of(result).size == (UPSCALED, UPSCALED)
    assert f"TinyBreaker upscale model: {upscaler}" in infotext_of(result)
    assert pixels(result) != pixels(bilinear)
    status, enhanced = txt2img([{**UPSCALE, "upscale_model": upscaler, "upscale_mode": "enhancer"}])
    assert status == 200, enhanced
    assert image_of(enhanced).size == (SIZE, SIZE)


def test_an_unknown_upscaler_is_a_422_that_lists_the_hosts():
    status, body = txt2img([{**UPSCALE, "upscale_model": "4x-NoSuchModel"}])
    assert status == 422, body
    detail = str(body.get("detail", body))
    assert "upscale_model" in detail and "'Lanczos'" in detail and "4x-NoSuchModel" in detail
    status, again = txt2img([{"enabled": True}])
    assert status == 200, again

"""TinyBreaker with an SDXL checkpoint loaded in a real WebUI: the host's SDXL model refines PixArt's latent as it
is (no transcoder). Switches the host to the SDXL checkpoint for the test and back afterwards. Skipped unless the
host has a checkpoint whose name contains "sdxl" (or the one TINYBREAKER_LIVE_SDXL names); keep images small, an
SDXL UNet on a CPU host is slow.

    TINYBREAKER_LIVE_URL=http://127.0.0.1:7865 python -m pytest tests/live/test_live_sdxl.py
"""

from __future__ import annotations

import os

import pytest

from test_live_webui import BASE_URL, call, decode_image, infotext_of, txt2img

pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set")]
SIZE = 256
SMALL = {"enabled": True, "style": "PHOTO", "base_steps": 4, "refine_steps": 2}


def _sdxl_title() -> str | None:
    status, models = call("GET", "/sdapi/v1/sd-models")
    assert status == 200, models
    wanted = os.environ.get("TINYBREAKER_LIVE_SDXL", "").lower()
    for model in models:
        name = f"{model.get('title', '')} {model.get('model_name', '')}".lower()
        if (wanted and wanted in name) or (not wanted and "sdxl" in name):
            return model["title"]
    return None


@pytest.fixture(scope="module")
def sdxl_loaded():
    title = _sdxl_title()
    if title is None:
        pytest.skip("no SDXL checkpoint on the host (name containing 'sdxl', or TINYBREAKER_LIVE_SDXL)")
    status, options = call("GET", "/sdapi/v1/options")
    assert status == 200, options
    previous = options["sd_model_checkpoint"]
    status, answer = call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": title})
    assert status == 200, answer
    try:
        yield title
    finally:
        call("POST", "/sdapi/v1/options", {"sd_model_checkpoint": previous})


def test_an_sdxl_checkpoint_refines_and_the_infotext_says_so(sdxl_loaded):
    status, result = txt2img([SMALL], steps=4, width=SIZE, height=SIZE)
    assert status == 200, result
    image = decode_image(result["images"][0])
    assert image.size == (SIZE, SIZE)
    info = infotext_of(result)
    assert "TinyBreaker refiner: SDXL" in info
    assert "Steps: 2" in info  # the refine steps that ran


def test_the_webui_refine_mode_runs_on_sdxl_too(sdxl_loaded):
    status, result = txt2img([{**SMALL, "refine_sampler": "webui", "refine_strength": 0.5}], steps=4, width=SIZE,
                             height=192)
    assert status == 200, result
    assert decode_image(result["images"][0]).size == (SIZE, 192)
    assert "TinyBreaker refiner: SDXL" in infotext_of(result)


def test_the_tiny_upscaler_on_sdxl_is_a_clear_422(sdxl_loaded):
    status, result = txt2img([{**SMALL, "upscale": True}], steps=4, width=SIZE, height=SIZE)
    assert status == 422, result
    assert "SDXL" in str(result)

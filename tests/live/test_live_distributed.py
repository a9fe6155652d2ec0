"""TinyBreaker through the Distributed extension (papuSpartan/stable-diffusion-webui-distributed): a master WebUI
splits a batch between itself and a worker WebUI, sending the worker our script arguments with a copy of
``p.__dict__`` (``json.dumps`` of it must work) and an offset seed (see docs/hosts.md, "Queues and workers").

Needs two running hosts with TinyBreaker installed, the master with Distributed configured to use the worker (see
docs/hosts.md for the procedure). Skipped unless TINYBREAKER_LIVE_URL (the master) is set,
TINYBREAKER_LIVE_DISTRIBUTED=1 and the master lists Distributed's script:
    TINYBREAKER_LIVE_URL=http://127.0.0.1:7861 TINYBREAKER_LIVE_DISTRIBUTED=1 \\
        python -m pytest tests/live/test_live_distributed.py
"""

from __future__ import annotations

import json
import os
import re

import pytest

from test_live_webui import BASE_URL, SIZE, call, decode_image, txt2img

pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set"),
              pytest.mark.skipif(os.environ.get("TINYBREAKER_LIVE_DISTRIBUTED") != "1",
                                 reason="TINYBREAKER_LIVE_DISTRIBUTED=1 not set (needs a master and a worker)")]


@pytest.fixture(scope="module", autouse=True)
def distributed():
    status, scripts = call("GET", "/sdapi/v1/scripts")
    assert status == 200, scripts
    if "distribute" not in [name.lower() for name in scripts["txt2img"]]:
        pytest.skip("the master does not list Distributed's script ('distribute')")


def seed_of(infotext: str) -> int:
    return int(re.search(r"\bSeed: (\d+)", infotext).group(1))


def distributed_txt2img(**overrides):
    # save_images: Distributed (8fd65eb) counts a grid image when it places the worker's infotext, and the API makes
    # no grid unless it saves images (without one, its postprocess fails with IndexError and the worker's own
    # infotext is lost; the image itself still arrives).
    status, result = txt2img([{"enabled": True}], batch_size=2, save_images=True, **overrides)
    assert status == 200, result
    infotexts = json.loads(result["info"])["infotexts"]
    from_worker = [text for text in infotexts if "Worker Label:" in text]
    from_master = [text for text in infotexts if "Worker Label:" not in text]
    assert from_worker and from_master, infotexts  # the worker got its share: our arguments reached it as JSON
    for text in infotexts:
        assert "TinyBreaker: on" in text and "TinyBreaker base steps:" in text, text
    return result, from_master, from_worker


def test_master_and_worker_each_make_a_tinybreaker_image_with_its_own_seed():
    result, from_master, from_worker = distributed_txt2img(seed=100)
    assert {seed_of(text) for text in from_master} == {100}
    assert [seed_of(text) for text in from_worker] == [101]  # Distributed's offset: one image before it
    assert (SIZE, SIZE) in {decode_image(image).size for image in result["images"]}


def test_an_inline_seed_still_gives_each_worker_its_own_seed():
    """Our before_process turns the inline --seed into the host's seed before Distributed's copies the request
    (metadata.ini orders the two), so the worker gets the offset seed and a prompt without the argument."""
    _, from_master, from_worker = distributed_txt2img(seed=1, prompt="a red cube on a table --seed 300")
    assert {seed_of(text) for text in from_master} == {300}
    assert [seed_of(text) for text in from_worker] == [301]
    assert not any("--seed" in text for text in from_master + from_worker)

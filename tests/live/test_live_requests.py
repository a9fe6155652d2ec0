"""A catalogue of bad requests against a real running WebUI: each is a 4xx naming the field (or, for inline prompt
arguments, a warning in the generation info), never a 5xx, never a traceback in the body, and the host serves a good
request right after. Bad model files are dropped into the host's TinyBreaker folder when TINYBREAKER_LIVE_MODELS
names it (same machine); a pickle among them would leave a marker file if anything ever unpickled it.

    TINYBREAKER_LIVE_URL=http://127.0.0.1:7860 TINYBREAKER_LIVE_MODELS=<webui>/models/TinyBreaker \\
        python -m pytest tests/live/test_live_requests.py
"""

from __future__ import annotations

import json
import os
import pickle

import pytest

from test_live_webui import BASE_URL, call, txt2img

MODELS = os.environ.get("TINYBREAKER_LIVE_MODELS", "")
pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set")]

ON = {"enabled": True}
# (name, script args, txt2img overrides, the field the answer must name)
BAD_FIELDS = [
    ("unknown field", [{**ON, "stepz": 3}], {}, "stepz"),
    ("base_steps too big", [{**ON, "base_steps": 1000}], {}, "base_steps"),
    ("base_steps negative", [{**ON, "base_steps": -1}], {}, "base_steps"),
    ("base_steps fraction", [{**ON, "base_steps": 2.5}], {}, "base_steps"),
    ("base_steps text", [{**ON, "base_steps": "many"}], {}, "base_steps"),
    ("base_steps bool", [{**ON, "base_steps": True}], {}, "base_steps"),
    ("base_cfg nan", [{**ON, "base_cfg": "nan"}], {}, "base_cfg"),
    ("base_cfg inf", [{**ON, "base_cfg": "inf"}], {}, "base_cfg"),
    ("base_cfg list", [{**ON, "base_cfg": [1, 2]}], {}, "base_cfg"),
    ("refine_strength > 1", [{**ON, "refine_strength": 1.5}], {}, "refine_strength"),
    ("refine_steps too big", [{**ON, "refine_steps": 101}], {}, "refine_steps"),
    ("refine_cfg negative", [{**ON, "refine_cfg": -3}], {}, "refine_cfg"),
    ("detail_level too big", [{**ON, "detail_level": 99}], {}, "detail_level"),
    ("cfg_shift too small", [{**ON, "cfg_shift": -99}], {}, "cfg_shift"),
    ("image_shift huge", [{**ON, "image_shift": 10 ** 30}], {}, "image_shift"),
    ("upscale_by too big", [{**ON, "upscale_by": 60}], {}, "upscale_by"),
    ("upscale_noise too big", [{**ON, "upscale_noise": 9}], {}, "upscale_noise"),
    ("upscale not a bool", [{**ON, "upscale": "perhaps"}], {}, "upscale"),
    ("enabled not a bool", [{"enabled": "maybe"}], {}, "enabled"),
    ("unknown style", [{**ON, "style": "NO_SUCH_STYLE"}], {}, "style"),
    ("style not a string", [{**ON, "style": 7}], {}, "style"),
    ("unknown base sampler", [{**ON, "base_sampler": "heun"}], {}, "base_sampler"),
    ("unknown base schedule", [{**ON, "base_scheduler": "linear"}], {}, "base_scheduler"),
    ("unknown t5 mode", [{**ON, "t5_mode": "fast"}], {}, "t5_mode"),
    ("unknown refine sampler", [{**ON, "refine_sampler": "comfy"}], {}, "refine_sampler"),
    ("positional: number as checkpoint", [True, 5], {}, "checkpoint"),
    ("positional: bad sampler", [True, "", "", "PHOTO", "not-a-sampler"], {}, "base_sampler"),
    ("dict in a list slot", [True, "", "", {"base_steps": "x"}], {}, "base_steps"),
    ("missing checkpoint", [{**ON, "checkpoint": "missing.safetensors"}], {}, "checkpoint"),
    ("absolute path", [{**ON, "checkpoint": "/etc/passwd"}], {}, "checkpoint"),
    ("path escape", [{**ON, "checkpoint": "../../../../etc/passwd"}], {}, "checkpoint"),
    ("escape inside a folder", [{**ON, "t5_file": "TinyBreaker/../../secret.safetensors"}], {}, "t5_file"),
    ("NUL in a name", [{**ON, "checkpoint": "a\u0000b.safetensors"}], {}, "checkpoint"),
    ("windows drive", [{**ON, "t5_file": "C:\\\\models\\\\t5.safetensors"}], {}, "t5_file"),
    ("a T5 file as checkpoint", [{**ON, "checkpoint": "__T5__"}], {}, "checkpoint"),
    ("a checkpoint as T5", [{**ON, "t5_file": "__CHECKPOINT__"}], {}, "t5_file"),
    ("width not a multiple of 8", [ON], {"width": 70}, "width"),
    # a checkpoint the host has (a name it does not know is the host's own error, a 500 on A1111)
    ("Hires with another checkpoint", [ON], {"enable_hr": True, "hr_checkpoint_name": "__SD_CHECKPOINT__"},
     "Hires checkpoint"),
]
# Inline prompt arguments with impossible values: a warning, never an attempt to allocate or a crash.
HOSTILE_PROMPTS = [
    ("--batch-size 100000", "100000"),
    ("--aspect 1:0", "aspect"),
    ("--seed 10000000000000000000000000", "seed"),
    ("--detail-level 1e309", "detail-level"),
    ("--cfg-shift 99999999999999999999", "cfg-shift"),
    ("--upscale-noise loud", "upscale-noise"),
    ("--nonsense 5", "nonsense"),
]
BAD_FILES = {  # name → bytes; each is requested as the checkpoint
    "random_bytes.safetensors": os.urandom(4096),
    "empty.safetensors": b"",
    "not_json_header.safetensors": (64).to_bytes(8, "little") + b"\xff" * 64,
    "huge_header.safetensors": (1 << 40).to_bytes(8, "little") + b"{}",
}
MARKER = "tinybreaker_live_unpickled_marker"


def model_names() -> dict:
    status, models = call("GET", "/tinybreaker/v1/models")
    assert status == 200, models
    return {"__T5__": models["t5"][0]["name"], "__CHECKPOINT__": models["checkpoint"][0]["name"]}


def assert_clean_4xx(status, body, field):
    text = json.dumps(body)
    assert 400 <= status < 500, (status, body)
    assert field in text, body
    assert "Traceback" not in text and 'File "' not in text, body


def assert_still_serving():
    status, result = txt2img([ON])
    assert status == 200, result


@pytest.mark.parametrize("name, args, overrides, field", BAD_FIELDS, ids=[case[0] for case in BAD_FIELDS])
def test_a_bad_request_is_a_clean_4xx_naming_the_field(name, args, overrides, field):
    names = model_names()
    args = json.loads(json.dumps(args).replace('"__T5__"', json.dumps(names["__T5__"])).replace(
        '"__CHECKPOINT__"', json.dumps(names["__CHECKPOINT__"])))
    if overrides.get("hr_checkpoint_name") == "__SD_CHECKPOINT__":
        status, checkpoints = call("GET", "/sdapi/v1/sd-models")
        assert status == 200 and checkpoints, checkpoints
        overrides = {**overrides, "hr_checkpoint_name": checkpoints[0]["title"]}
    status, body = txt2img(args, **overrides)
    assert_clean_4xx(status, body, field)


@pytest.mark.parametrize("argument, fragment", HOSTILE_PROMPTS, ids=[case[0] for case in HOSTILE_PROMPTS])
def test_hostile_inline_arguments_are_warnings(argument, fragment):
    status, result = txt2img([ON], prompt=f"a red cube {argument}")
    assert status == 200, result
    info = json.loads(result["info"])
    assert len(result["images"]) <= 16 + 1  # the batch-size limit (plus a grid)
    # No host returns p.comment() notes through the API; the "TinyBreaker warnings" infotext field carries them.
    warnings = (info.get("extra_generation_params") or {}).get("TinyBreaker warnings", "")
    assert fragment in warnings, info


def test_the_plan_route_answers_bad_bodies_with_a_4xx():
    for body, field in (({"width": "wide"}, "width"), ({"args": [{"base_steps": 1000}]}, "base_steps"),
                        ({"seed": 10 ** 30}, "seed")):
        status, answer = call("POST", "/tinybreaker/v1/plan", body)
        assert_clean_4xx(status, answer, field)


@pytest.mark.skipif(not MODELS, reason="TINYBREAKER_LIVE_MODELS (the host's TinyBreaker folder) not set")
@pytest.mark.parametrize("name", [*BAD_FILES, "pickle.safetensors", "truncated.safetensors"])
def test_a_bad_model_file_in_the_folder_is_a_clean_4xx_and_never_unpickled(name, tmp_path):
    path = os.path.join(MODELS, name)
    marker = tmp_path / MARKER
    if name == "pickle.safetensors":
        class Payload:
            def __reduce__(self):
                return open, (str(marker), "w")
        data = pickle.dumps(Payload())
    elif name == "truncated.safetensors":
        real = os.path.join(MODELS, model_names()["__CHECKPOINT__"])
        with open(real, "rb") as file:
            data = file.read(os.path.getsize(real) // 2)
    else:
        data = BAD_FILES[name]
    with open(path, "wb") as file:
        file.write(data)
    try:
        status, body = txt2img([{**ON, "checkpoint": name}])
        assert_clean_4xx(status, body, "checkpoint")
        status, models = call("GET", "/tinybreaker/v1/models")
        assert status == 200 and name not in [entry["name"] for entry in models["checkpoint"]]
        assert not marker.exists()
        assert_still_serving()
    finally:
        os.remove(path)


def test_the_host_serves_after_the_catalogue():
    assert_still_serving()

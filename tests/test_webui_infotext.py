"""Infotext: what we write into p.extra_generation_params survives the host's infotext text round trip, and
pasting it back reproduces the same generation."""

import json
import os
import re

from builders.fake_hosts import calls_named
from builders.params import script_args
from tinybreaker_ext import params
from tinybreaker_ext.params import TinyBreakerParams

# The key/value grammar of A1111's infotext_utils.parse_generation_parameters (modules/infotext_utils.py:16).
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(text):
    """infotext_utils.quote"""
    if ',' not in str(text) and '\n' not in str(text) and ':' not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def create_infotext(p) -> str:
    """processing.create_infotext, reduced to the host keys we touch plus extra_generation_params."""
    generation_params = {"Steps": p.steps, "Sampler": p.sampler_name, "CFG scale": p.cfg_scale, "Seed": p.seed,
                         "Size": f"{p.width}x{p.height}", **p.extra_generation_params}
    text = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in generation_params.items() if v is not None)
    return f"{p.prompt}\nNegative prompt: {p.negative_prompt}\n{text}"


def parse_generation_parameters(text: str) -> dict[str, str]:
    """The key/value part of infotext_utils.parse_generation_parameters."""
    *lines, lastline = text.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lastline = ""
    result = {}
    for key, value in RE_PARAM.findall(lastline):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        size = RE_IMAGESIZE.match(value)
        if size is not None:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        else:
            result[key] = value
    return result


def tinybreaker_keys(extra: dict) -> dict:
    return {key: value for key, value in extra.items() if key.startswith("TinyBreaker")}


def test_extra_generation_params_describe_what_ran(tb_host):
    checkpoint = os.path.basename(tb_host.files["checkpoint"])
    args = script_args(TinyBreakerParams(enabled=True, checkpoint=checkpoint, style="COMIC", cfg_shift=2, image_shift=3,
                                         t5_mode="cpu", refine_sampler="webui"))
    p = tb_host.make_p(steps=30, cfg_scale=7.0)
    tb_host.run(p, args)
    written = tinybreaker_keys(p.extra_generation_params)
    # COMIC in styles_v03.ini: base deis / sgm_uniform / 17 steps / CFG 5.2; refiner steps 14 from step 10, CFG 3.
    assert written["TinyBreaker"] == "on" and written["TinyBreaker model"] == checkpoint
    assert written["TinyBreaker style"] == "COMIC"
    assert (written["TinyBreaker base sampler"], written["TinyBreaker base schedule"]) == ("deis", "sgm_uniform")
    assert written["TinyBreaker base steps"] == 17
    assert written["TinyBreaker base CFG"] == "5.2"  # the base CFG before the shift …
    assert written["TinyBreaker CFG shift"] == 2  # … and the shift, so a paste applies it once
    assert written["TinyBreaker refine steps"] == 0 and written["TinyBreaker refine CFG"] == "3"  # the style's window
    assert written["TinyBreaker image shift"] == 3 and written["TinyBreaker T5 mode"] == "cpu"
    assert written["TinyBreaker refine strength"] == "0" and written["TinyBreaker refine sampler"] == "webui"
    assert p.infotext_params[0]["TB refiner parameters"] == (
        "sampler_name:lms, scheduler:beta, steps:14, start_at_step:10, end_at_step:14, cfg:3.0, noise_seed:4")
    # The host's own keys describe the refine its sampler ran.
    assert (p.steps, p.cfg_scale) == (4, 3.0)
    call = calls_named("sampler.sample_img2img")[0][1]
    assert (call["steps"], call["cfg_scale"]) == (4, 3.0)
    assert call["denoising_strength"] == 0.218  # the window starts at timestep 217 of SD1's table (+1, /1000)


def test_pasting_the_infotext_reproduces_the_generation(tb_host):
    args = script_args(TinyBreakerParams(enabled=True, style="COMIC", cfg_shift=2, detail_level=1, image_shift=3,
                                         t5_file=os.path.basename(tb_host.files["t5"]), refine_sampler="webui"))
    first = tb_host.make_p(prompt="a castle, at night: stormy")
    tb_host.run(first, args)
    first_call = calls_named("sampler.sample_img2img")[0][1]
    first_stage = tb_host.engine.base_calls[0]["stage"]

    parsed = parse_generation_parameters(create_infotext(first))
    assert parsed["Steps"] == str(first.steps)  # the parser saw the whole parameter line
    pasted = TinyBreakerParams(**{**TinyBreakerParams().as_dict(), **params.from_infotext(parsed)})
    assert pasted.enabled and pasted.style == "COMIC" and pasted.image_shift == 3

    tb_host.state.begin()
    second = tb_host.make_p(prompt="a castle, at night: stormy")
    tb_host.run(second, script_args(pasted))
    second_call = calls_named("sampler.sample_img2img")[-1][1]
    assert tinybreaker_keys(second.extra_generation_params) == tinybreaker_keys(first.extra_generation_params)
    assert tb_host.engine.base_calls[-1]["stage"] == first_stage
    for key in ("steps", "denoising_strength", "cfg_scale"):
        assert second_call[key] == first_call[key], key
    assert (second.steps, second.cfg_scale) == (first.steps, first.cfg_scale)


def test_quoted_values_survive_the_round_trip(tb_host, tmp_path):
    (tmp_path / "mine.ini").write_text("[MY, STYLE]\nbase.cfg = 4.0\n", encoding="utf-8")
    tb_host.shared.opts.data["tinybreaker_style_dirs"] = str(tmp_path)  # Settings → extra style folders
    p = tb_host.make_p()
    tb_host.run(p, [True, {"style": "MY, STYLE"}])
    parsed = parse_generation_parameters(create_infotext(p))
    assert parsed["TinyBreaker style"] == "MY, STYLE"
    assert params.from_infotext(parsed)["style"] == "MY, STYLE"


def test_disabled_writes_nothing(tb_host):
    p = tb_host.make_p()
    tb_host.run(p, [False])
    assert tinybreaker_keys(p.extra_generation_params) == {}
    assert params.from_infotext(parse_generation_parameters(create_infotext(p))) == {}

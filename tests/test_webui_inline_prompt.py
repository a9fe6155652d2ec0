"""Inline `--` parameters typed in the txt2img prompt, and ComfyUI-TinyBreaker's TB infotext fields."""

import pytest

from builders.fake_hosts import CALLS
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.infotext import parse_stage_parameters
from tinybreaker_ext.webui.callbacks import translate_pasted

ARGS = script_args(TinyBreakerParams(enabled=True))


def refine_calls():
    return [call[1] for call in CALLS if call[0] in ("sampler.sample_img2img", "cfg_denoiser.forward")]


def test_seed_size_and_style_come_from_the_prompt_and_the_arguments_stay_in_the_saved_prompt(tb_host):
    prompt = "a red cube --aspect 16:9 --seed 7 --style COMIC"
    p = tb_host.make_p(prompt=prompt, seed=1, width=64, height=64)
    tb_host.run(p, ARGS)
    (base_call,) = tb_host.engine.base_calls
    assert base_call["seeds"] == [7]
    assert (p.width, p.height) == (1664, 944)  # 16:9 large, the reference's size table
    # --seed became the host's own seed before the job (so a distributing master can offset it per worker)
    assert p.all_seeds == [7] and p.all_prompts == ["a red cube --aspect 16:9 --style COMIC"]
    assert p.extra_generation_params["TB style"] == "COMIC"
    assert "a red cube" in base_call["texts"][0] and "--" not in base_call["texts"][0]
    assert base_call["texts"][0].startswith("Comic art with black outlines showing a red cube.")
    assert (base_call["stage"].sampler, base_call["stage"].scheduler) == ("deis", "sgm_uniform")


def test_the_host_clip_sees_the_styles_refine_texts_and_the_saved_texts_stay_the_users(tb_host):
    prompt = "a lighthouse --refine sharp rocks --no fog, haze --cfg-shift 2"
    p = tb_host.make_p(prompt=prompt, negative_prompt="blurry")
    tb_host.run(p, ARGS)
    # PHOTO's refiner (styles_v03.ini): no prompt template, negative "(drawing, low quality, worst quality:1.8){. $@}"
    assert p.prompts == ["sharp rocks. a lighthouse"]
    assert p.negative_prompts == ["(drawing, low quality, worst quality:1.8). blurry, fog, haze"]
    assert p.all_prompts == [prompt] and p.all_negative_prompts == ["blurry"]
    base_text = tb_host.engine.base_calls[0]["texts"][0]
    assert "sharp rocks" not in base_text and "a lighthouse" in base_text
    assert tb_host.engine.base_calls[0]["negative_texts"][0] == "macro photography, tiny, (bokeh:0.6), painted. blurry, fog, haze"
    assert tb_host.engine.base_calls[0]["stage"].cfg == pytest.approx(3.4 + 0.4)


def test_detail_level_none_skips_the_host_refine(tb_host):
    tb_host.run(tb_host.make_p(prompt="a cat --detail-level none"), ARGS)
    assert refine_calls() == []


def test_batch_size_from_the_prompt_rebuilds_the_batch(tb_host):
    p = tb_host.make_p(prompt="a cat --batch-size 2 --seed 30", batch_size=1)
    (output,) = tb_host.run(p, ARGS)
    assert p.batch_size == 2 and p.all_seeds == [30, 31]
    assert tb_host.engine.base_calls[0]["seeds"] == [30, 31]
    assert output.shape[0] == 2


def test_unknown_arguments_are_reported_not_silent(tb_host, caplog):
    comments = []
    p = tb_host.make_p(prompt="a cat --sed 5")
    p.comment = comments.append
    tb_host.run(p, ARGS)
    assert any("sed" in text for text in comments)
    assert "sed" in p.extra_generation_params["TinyBreaker warnings"]  # what an API caller gets back


def test_an_inline_batch_size_over_the_limit_is_a_warning_the_api_returns(tb_host):
    p = tb_host.make_p(prompt="a cat --batch-size 100000")
    tb_host.run(p, ARGS)
    assert p.batch_size == 16
    assert "--batch-size 100000 is more than 16" in p.extra_generation_params["TinyBreaker warnings"]


def test_tb_fields_follow_each_images_seed(tb_host):
    p = tb_host.make_p(prompt="a cat", batch_size=2, seed=40)
    tb_host.run(p, ARGS)
    second = p.infotext_params[1]["TB base parameters"]
    values, warnings = parse_stage_parameters(second)
    assert values["noise_seed"] == 41 and not warnings
    assert values["sampler"] == "uni_pc"


COMFY_INFOTEXT_FIELDS = {
    "Steps": "23", "Sampler": "DPM++ 2M SDE Beta", "CFG scale": "3.4", "Seed": "5", "Size": "1024x1536",
    "Model": "tinybreaker_prototype1", "TB style": "ULTRAPHOTO",
    "TB base parameters": "sampler_name:dpmpp_2m_sde, scheduler:beta, steps:16, start_at_step:3, end_at_step:16, "
                          "cfg:3.4, noise_seed:5",
    "TB refiner parameters": "sampler_name:dpmpp_2m, scheduler:normal, steps:22, start_at_step:12, end_at_step:22, "
                             "cfg:2.0, noise_seed:1",
}


def test_comfyui_infotext_turns_tinybreaker_on_with_its_style_and_base_parameters():
    from tinybreaker_ext import params

    fields = dict(COMFY_INFOTEXT_FIELDS)
    translate_pasted("", fields)
    restored = params.from_dict(params.from_infotext(fields))
    assert restored.enabled and restored.style == "ULTRAPHOTO"
    assert (restored.base_sampler, restored.base_scheduler, restored.base_steps, restored.base_cfg) == (
        "dpmpp_2m_sde", "beta", 16, 3.4)
    assert restored.refine_cfg == 2.0 and restored.checkpoint == "tinybreaker_prototype1.safetensors"
    assert "Model" not in fields  # the host must not try to load the TinyBreaker file as its SD checkpoint
    assert fields["Seed"] == "5" and fields["Size"] == "1024x1536"


def test_our_own_infotext_is_left_as_written():
    fields = {"TinyBreaker": "on", "TinyBreaker style": "PHOTO", "TB style": "COMIC", "Model": "photon"}
    translate_pasted("", fields)
    assert fields["TinyBreaker style"] == "PHOTO" and fields["Model"] == "photon"


def test_upscale_on_in_the_prompt_runs_the_tiny_upscaler_after_the_refine(tb_host, monkeypatch):
    from tinybreaker_ext.webui import upscale

    calls = []

    def fake_upscaler(p, samples, engine, host, stage, scale_by, mode, upscale_model):
        calls.append((scale_by, stage.extra_noise, CALLS[-1][0]))
        return samples

    monkeypatch.setattr(upscale, "run_tiny_upscaler", fake_upscaler)
    p = tb_host.make_p(prompt="a cat --upscale on --upscale-noise 2")
    tb_host.run(p, ARGS)
    ((scale_by, extra_noise, previous_call),) = calls
    assert scale_by == 2.0 and extra_noise == pytest.approx(0.6 + 0.4)
    assert previous_call == "state.nextjob"  # the upscaler is a job of its own in the progress bar
    assert tb_host.state.job_count == 3
    assert p.extra_generation_params["TinyBreaker upscale"] == "on"


def test_the_upscale_mode_and_model_in_the_prompt_reach_the_tiny_upscaler_and_the_infotext(tb_host, monkeypatch):
    from tinybreaker_ext.webui import upscale

    calls = []
    monkeypatch.setattr(upscale, "run_tiny_upscaler", lambda p, samples, engine, host, stage, scale_by, mode,
                        upscale_model: calls.append((scale_by, mode, upscale_model)) or samples)
    p = tb_host.make_p(prompt="a cat --upscale enhancer --upscale-model r-esrgan 4x+")
    tb_host.run(p, ARGS)
    assert calls == [(2.0, "enhancer", "r-esrgan 4x+")]
    assert p.extra_generation_params["TinyBreaker upscale mode"] == "enhancer"
    assert p.extra_generation_params["TinyBreaker upscale model"] == "r-esrgan 4x+"


def test_a_size_far_from_pixarts_trained_area_is_reported(tb_host):
    comments = []
    p = tb_host.make_p(prompt="a cat", width=64, height=64)
    p.comment = comments.append
    tb_host.run(p, ARGS)
    assert any("area PixArt was trained on" in text for text in comments)
    comments.clear()
    p = tb_host.make_p(prompt="a cat --aspect 3:2")
    p.comment = comments.append
    tb_host.run(p, ARGS)
    assert not any("area PixArt" in text for text in comments)


def test_inline_seed_and_batch_size_become_the_hosts_before_a_distributing_master_copies_the_request(tb_host):
    """The Distributed extension copies p.__dict__ in its before_process, json.dumps it and offsets each worker's
    seed: after ours, the seed and batch size are the host's own fields and the prompt no longer pins a seed."""
    import copy
    import json

    from tinybreaker_ext.webui import script_logic

    p = tb_host.make_p(prompt="a cat --seed 70 --batch-size 3 --style COMIC", seed=1)
    script_logic.before_process(p, *ARGS)
    assert (p.seed, p.batch_size, p.prompt) == (70, 3, "a cat --style COMIC")
    payload = {key: value for key, value in copy.copy(p.__dict__).items() if key not in ("sd_model", "scripts", "rng")}
    json.dumps(payload, default=str)
    worker = tb_host.make_p(prompt=payload["prompt"], seed=payload["seed"] + 3, batch_size=1)  # the worker's part
    tb_host.run(worker, ARGS)
    assert tb_host.engine.base_calls[-1]["seeds"] == [73]


def test_random_inline_seed_is_drawn_once_before_the_job(tb_host):
    from tinybreaker_ext.webui import script_logic

    p = tb_host.make_p(prompt="a cat --s random", seed=1)
    script_logic.before_process(p, *ARGS)
    assert p.prompt == "a cat" and 0 <= p.seed <= 1 << 24

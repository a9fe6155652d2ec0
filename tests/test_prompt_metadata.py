import json
import random

import pytest

from tinybreaker_ext.prompt.apply import apply_inline_prompt
from tinybreaker_ext.prompt.grammar import parse_inline_prompt
from tinybreaker_ext.prompt.metadata import (
    format_infotext, format_number, format_stage_parameters, infotext_parameters, parse_infotext,
    parse_infotext_line, parse_stage_parameters, parse_tb_infotext, quote_infotext_value, resolve_random_seed,
    restore_settings, tb_infotext_fields,
)
from tinybreaker_ext.stage_params import GenerationSettings, StageParams

# §7 example (workflow default, seed 5, 3:2 portrait, ULTRAPHOTO), verbatim, with a concrete prompt text.
SPEC_EXAMPLE = (
    "A red fox in the snow\n\n--aspect 3:2 --portrait --seed 5 --upscale off\n"
    "Steps: 23, Sampler: DPM++ 2M SDE Beta, CFG scale: 3.4, Seed: 5, Size: 1024x1536, Model: tinybreaker_prototype1, "
    "TB style: ULTRAPHOTO, "
    'TB base parameters: "sampler_name:dpmpp_2m_sde, scheduler:beta, steps:16, start_at_step:3, end_at_step:16, '
    'cfg:3.4, noise_seed:5", '
    'TB refiner parameters: "sampler_name:dpmpp_2m, scheduler:normal, steps:22, start_at_step:12, end_at_step:22, '
    'cfg:2.0, noise_seed:1"'
)

STAGE_FIELDS = ("prompt", "negative", "sampler", "scheduler", "steps", "steps_start", "steps_end", "steps_nfactor",
                "cfg", "noise_seed", "extra_noise")


def generate(styles, style, text, rng=None):
    settings = styles.apply(GenerationSettings(), style)
    return apply_inline_prompt(settings, parse_inline_prompt(text), styles, rng=rng)


def test_spec_example_parses_into_fields():
    params = parse_infotext(SPEC_EXAMPLE)
    assert params["Prompt"] == "A red fox in the snow\n\n--aspect 3:2 --portrait --seed 5 --upscale off"
    assert params["Negative prompt"] == ""
    assert params["Steps"] == "23" and params["Sampler"] == "DPM++ 2M SDE Beta" and params["CFG scale"] == "3.4"
    assert params["Size"] == "1024x1536" and params["Model"] == "tinybreaker_prototype1"
    assert params["TB base parameters"].startswith("sampler_name:dpmpp_2m_sde, scheduler:beta, steps:16")
    info = parse_tb_infotext(params)
    assert (info.style, info.seed, info.width, info.height) == ("ULTRAPHOTO", 5, 1024, 1536)
    assert info.base == {"sampler": "dpmpp_2m_sde", "scheduler": "beta", "steps": 16, "steps_start": 3,
                         "steps_end": 16, "cfg": 3.4, "noise_seed": 5}
    assert info.refiner == {"sampler": "dpmpp_2m", "scheduler": "normal", "steps": 22, "steps_start": 12,
                            "steps_end": 22, "cfg": 2.0, "noise_seed": 1}
    assert info.warnings == []


def test_spec_example_restores_and_writes_back_verbatim(builtin_styles):
    warnings = []
    settings = restore_settings(parse_tb_infotext(parse_infotext(SPEC_EXAMPLE)), builtin_styles, warnings=warnings)
    assert warnings == []
    assert settings.style == "ULTRAPHOTO"
    assert (settings.image.aspect_ratio, settings.image.orientation, settings.image.enable_upscaler) == \
        ("3:2", "portrait", False)
    assert format_infotext(settings, model="tinybreaker_prototype1.safetensors") == SPEC_EXAMPLE


def test_restored_settings_equal_a_fresh_generation_from_the_prompt(builtin_styles):
    fresh = generate(builtin_styles, "ULTRAPHOTO", "A red fox in the snow\n\n--aspect 3:2 --portrait --seed 5 "
                                                   "--upscale off")
    restored = restore_settings(parse_tb_infotext(parse_infotext(SPEC_EXAMPLE)), builtin_styles)
    assert restored == fresh


@pytest.mark.parametrize("style, text", [
    ("PHOTO", "a cat, on a roof: at night --cfg-shift -1 --image-shift 2 --d high --aspect 16:9 --medium"),
    ("PIXEL_ART", "a castle\n--seed random --no people --refine !pixel castle --upscale --upscale-noise low"),
    ("COMIC", "héroïne \"quoted\" --s random --portrait --aspect 2:1 --batch-size 2"),
    ("none", ""),
])
def test_settings_round_trip_through_infotext(builtin_styles, style, text):
    original = generate(builtin_styles, style, text, rng=random.Random(7))
    infotext = format_infotext(original, model="models/tinybreaker_prototype1.safetensors")
    warnings = []
    restored = restore_settings(parse_tb_infotext(parse_infotext(infotext)), builtin_styles,
                                rng=random.Random(999), warnings=warnings)
    assert warnings == []
    for stage in ("base", "refiner", "upscaler"):
        for field in STAGE_FIELDS:
            assert getattr(restored.stage(stage), field) == getattr(original.stage(stage), field), (stage, field)
    assert restored.image == original.image and restored.style == original.style
    # the random seed is written into the saved prompt, so the prompt alone now reproduces the generation
    assert "random" not in restored.prompt
    assert restored.prompt == resolve_random_seed(original.prompt, original.base.noise_seed)
    assert format_infotext(restored, model="tinybreaker_prototype1") == infotext


def test_recorded_values_win_over_a_changed_style(builtin_styles):
    params = parse_infotext(SPEC_EXAMPLE.replace("steps:16, start_at_step:3, end_at_step:16, cfg:3.4",
                                                 "steps:18, start_at_step:4, end_at_step:18, cfg:3.8"))
    warnings = []
    settings = restore_settings(parse_tb_infotext(params), builtin_styles, warnings=warnings)
    assert (settings.base.steps, settings.base.steps_start, settings.base.cfg) == (18, 4, 3.8)
    assert settings.base.steps_end == 10000  # still stops at `steps`
    assert len(warnings) == 3 and all("recorded" in w for w in warnings)


def test_unknown_style_is_reported_and_recorded_values_used():
    warnings = []
    settings = restore_settings(parse_tb_infotext(parse_infotext(SPEC_EXAMPLE)), None, warnings=warnings)
    assert settings.base.sampler == "dpmpp_2m_sde" and settings.refiner.steps == 22
    assert any("ULTRAPHOTO" in w for w in warnings)


@pytest.mark.parametrize("value, text", [
    (3.1999999999999997, "3.2"), (3.4, "3.4"), (2.0, "2.0"), (3, "3"), (0.30000000000000004, "0.3"),
    (-0.0, "0.0"), (4.125, "4.125"), (1e-7, "0.0"),
])
def test_clean_number_format(value, text):
    assert format_number(value) == text


def test_cfg_artefacts_are_not_written():
    settings = GenerationSettings(base=StageParams(cfg=3.4 - 0.2))
    assert 3.4 - 0.2 != 3.2
    fields = infotext_parameters(settings)
    assert fields["CFG scale"] == "3.2" and "cfg:3.2," in fields["TB base parameters"]


def test_step_count_and_end_rules():
    settings = GenerationSettings(base=StageParams(steps=12, steps_start=2, steps_end=10000),
                                  refiner=StageParams(steps=11, steps_start=6, steps_end=-2))
    fields = infotext_parameters(settings)
    assert fields["Steps"] == str((12 - 2) + (9 - 6))
    assert "end_at_step:9" in fields["TB refiner parameters"]
    assert list(tb_infotext_fields(settings)) == ["TB base parameters", "TB refiner parameters"]


def test_field_order_and_size_default_to_the_computed_size():
    settings = GenerationSettings(style="PHOTO")
    fields = infotext_parameters(settings, model="x.safetensors")
    assert list(fields) == ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "TB style",
                            "TB base parameters", "TB refiner parameters"]
    assert fields["Size"] == "1248x1248" and fields["Model"] == "x"
    assert infotext_parameters(settings, width=640, height=512)["Size"] == "640x512"


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"), ("a, b", '"a, b"'), ("k:v", '"k:v"'), ("two\nlines", '"two\\nlines"'),
    ("héros, x", '"héros, x"'), ('say "hi", ok', '"say \\"hi\\", ok"'),
])
def test_quoting(value, expected):
    assert quote_infotext_value(value) == expected
    assert parse_infotext_line(f"Steps: 1, Key: {expected}, Other: 2")["Key"] == value


def test_parse_infotext_with_negative_prompt_and_multiline_prompt():
    text = "line one\nline two\nNegative prompt: bad\nworse\nSteps: 20, Sampler: Euler, Seed: 3, Size: 512x768"
    params = parse_infotext(text)
    assert params["Prompt"] == "line one\nline two" and params["Negative prompt"] == "bad\nworse"
    assert params["Seed"] == "3"
    assert parse_infotext("just a prompt")["Prompt"] == "just a prompt"


def test_a1111_style_split_size_is_accepted():
    info = parse_tb_infotext({"Size-1": "832", "Size-2": "1216", "Seed": "x"})
    assert (info.width, info.height) == (832, 1216)
    assert info.seed is None and any("Seed" in w for w in info.warnings)
    assert not info.is_tinybreaker


def test_stage_parameters_round_trip_and_tolerate_noise():
    stage = StageParams(sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=6, cfg=2.0, noise_seed=4)
    values, warnings = parse_stage_parameters(format_stage_parameters(stage))
    assert warnings == []
    assert values == {"sampler": "deis", "scheduler": "ddim_uniform", "steps": 11, "steps_start": 6,
                      "steps_end": 11, "cfg": 2.0, "noise_seed": 4}
    values, warnings = parse_stage_parameters("steps:x, color:red, cfg:2.5, junk")
    assert values == {"cfg": 2.5} and len(warnings) == 2


@pytest.mark.parametrize("text, expected", [
    ("a cat --seed random", "a cat --seed 77"),
    ("a cat --s random --portrait", "a cat --s 77 --portrait"),
    ("a cat --SEED Random\n--aspect 3:2", "a cat --SEED 77\n--aspect 3:2"),
    ("a cat --seed -1", "a cat --seed 77"),
    ("a random cat --seed 5", "a random cat --seed 5"),
    ("a cat --no random --seed 4", "a cat --no random --seed 4"),
    ("a cat --seed random stuff", "a cat --seed random stuff"),
    ("", ""),
])
def test_random_seed_is_written_into_the_prompt(text, expected):
    assert resolve_random_seed(text, 77) == expected


def test_infotext_is_json_safe_and_written_prompt_has_the_seed(builtin_styles):
    settings = generate(builtin_styles, "PHOTO", "a cat --seed random", rng=random.Random(3))
    text = format_infotext(settings, negative="blurry")
    assert text.startswith(f"a cat --seed {settings.base.noise_seed}\nNegative prompt: blurry\nSteps: ")
    json.dumps(text)

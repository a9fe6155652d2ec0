import pytest

from builders.infotext import parse_infotext, parse_infotext_line
from tinybreaker_ext.infotext import (
    format_number, format_stage_parameters, parse_stage_parameters, quote_infotext_value, resolve_random_seed,
)
from tinybreaker_ext.stage_params import StageParams

# The reference's example (docs/numerics.md "Infotext and sampler names"): workflow default, seed 5, 3:2 portrait,
# ULTRAPHOTO, verbatim, with a concrete prompt text.
SPEC_EXAMPLE = (
    "A red fox in the snow\n\n--aspect 3:2 --portrait --seed 5 --upscale off\n"
    "Steps: 23, Sampler: DPM++ 2M SDE Beta, CFG scale: 3.4, Seed: 5, Size: 1024x1536, Model: tinybreaker_prototype1, "
    "TB style: ULTRAPHOTO, "
    'TB base parameters: "sampler_name:dpmpp_2m_sde, scheduler:beta, steps:16, start_at_step:3, end_at_step:16, '
    'cfg:3.4, noise_seed:5", '
    'TB refiner parameters: "sampler_name:dpmpp_2m, scheduler:normal, steps:22, start_at_step:12, end_at_step:22, '
    'cfg:2.0, noise_seed:1"'
)

def test_spec_example_parses_into_fields():
    params = parse_infotext(SPEC_EXAMPLE)
    assert params["Prompt"] == "A red fox in the snow\n\n--aspect 3:2 --portrait --seed 5 --upscale off"
    assert params["Negative prompt"] == ""
    assert params["Steps"] == "23" and params["Sampler"] == "DPM++ 2M SDE Beta" and params["CFG scale"] == "3.4"
    assert params["Size"] == "1024x1536" and params["Model"] == "tinybreaker_prototype1"
    assert params["TB base parameters"].startswith("sampler_name:dpmpp_2m_sde, scheduler:beta, steps:16")


@pytest.mark.parametrize("value, text", [
    (3.1999999999999997, "3.2"), (3.4, "3.4"), (2.0, "2.0"), (3, "3"), (0.30000000000000004, "0.3"),
    (-0.0, "0.0"), (4.125, "4.125"), (1e-7, "0.0"),
])
def test_clean_number_format(value, text):
    assert format_number(value) == text


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

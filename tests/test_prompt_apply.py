import copy

import pytest

from tinybreaker_ext.prompt.apply import apply_inline_prompt, refiner_text
from tinybreaker_ext.prompt.grammar import parse_inline_prompt
from tinybreaker_ext.stage_params import GenerationSettings


def run(text, styles=None, start=None, **kwargs):
    warnings = []
    settings = start or (styles.apply(GenerationSettings(), "PLAIN") if styles else GenerationSettings())
    result = apply_inline_prompt(settings, parse_inline_prompt(text), styles, warnings=warnings, **kwargs)
    return result, warnings


class RecordingRng:
    def __init__(self, value):
        self.value, self.calls = value, []

    def randint(self, a, b):
        self.calls.append((a, b))
        return self.value


def test_prompt_and_negative_go_through_the_style_templates(small_styles):
    result, warnings = run("a cat --no dogs", small_styles)
    assert result.base.prompt == "Base of. a cat"
    assert result.base.negative == "bad base, dogs"
    assert result.refiner.prompt == "Refined, a cat"
    assert result.refiner.negative == "bad refiner. dogs"
    assert warnings == []


def test_empty_prompt_and_no_negative_remove_the_blocks(small_styles):
    result, _ = run("", small_styles)
    assert (result.base.prompt, result.base.negative) == ("Base of", "bad base")
    assert (result.refiner.prompt, result.refiner.negative) == ("Refined", "bad refiner")


def test_without_templates_the_texts_are_taken_as_they_are():
    result, _ = run("a cat --no dogs")
    assert (result.base.prompt, result.base.negative) == ("a cat", "dogs")
    assert (result.refiner.prompt, result.refiner.negative) == ("a cat", "dogs")


@pytest.mark.parametrize("refine, prompt, expected", [
    ("a dog", "a cat", "a dog. a cat"),       # fixed: one space between refine text and prompt
    ("a dog.", "a cat", "a dog. a cat"),
    ("!a dog", "a cat", "a dog."),
    ("!a dog.", "a cat", "a dog."),
    ("a dog", "", "a dog."),
    ("", "a cat", "a cat"),                   # empty --refine counts as absent
    ("!", "a cat", ""),
])
def test_refiner_text(refine, prompt, expected):
    assert refiner_text(refine, prompt) == expected


def test_refine_argument_reaches_the_refiner_template(small_styles):
    assert run("a cat --refine sharp fur", small_styles)[0].refiner.prompt == "Refined, sharp fur. a cat"
    assert run("a cat --refine !sharp fur", small_styles)[0].refiner.prompt == "Refined, sharp fur."
    assert run("a cat --refine", small_styles)[0].refiner.prompt == "Refined, a cat"
    assert run("a cat --refine sharp", small_styles)[0].base.prompt == "Base of. a cat"


@pytest.mark.parametrize("shift, expected", [(-1, 3.2), (1, 3.6), (2, 3.8), (-2, 3.0), (0, 3.4), (10, 5.4)])
def test_cfg_shift_moves_base_cfg_by_a_fifth_per_step(small_styles, shift, expected):
    result, _ = run(f"--cfg-shift {shift}", small_styles)
    assert result.base.cfg == expected  # exact: no 3.1999999999999997
    assert result.refiner.cfg == 2.0


def test_image_shift_adds_to_the_refiner_seed_and_variant_sets_it(small_styles):
    assert run("--image-shift 3", small_styles)[0].refiner.noise_seed == 4
    assert run("--i -1", small_styles)[0].refiner.noise_seed == 0
    assert run("--variant 9", small_styles)[0].refiner.noise_seed == 9
    assert run("--i 3 --variant 9", small_styles)[0].refiner.noise_seed == 9  # variant is applied later
    assert run("--i 3", small_styles)[0].base.noise_seed == 1


@pytest.mark.parametrize("text, expected", [("--upscale", True), ("--u on", True), ("--upscale off", False)])
def test_upscale_switch(text, expected):
    start = GenerationSettings()
    start.image.enable_upscaler = not expected
    assert run(text, start=start)[0].image.enable_upscaler is expected


@pytest.mark.parametrize("value, expected", [
    ("none", 0.0), ("minimal", 0.2), ("low", 0.4), ("normal", 0.6), ("high", 0.8), ("veryhigh", 1.0),
    ("maximum", 1.2), ("1", 0.8), ("-1", 0.4), ("-3", 0.0), ("-10", 0.0), ("5", 1.6),
])
def test_upscale_noise_levels_and_steps(small_styles, value, expected):
    assert run(f"--upscale-noise {value}", small_styles)[0].upscaler.extra_noise == expected


@pytest.mark.parametrize("value, expected", [
    ("none", -10000), ("minimal", -2), ("low", -1), ("normal", 0), ("high", 1), ("veryhigh", 2), ("maximum", 3),
    ("5", 5), ("-4", -4), ("HIGH", 1),
])
def test_detail_level_sets_the_refiner_step_factor(value, expected):
    start = GenerationSettings()
    start.refiner.steps_nfactor = 7
    result = run(f"--detail-level {value}", start=start)[0]
    assert result.refiner.steps_nfactor == expected
    assert result.base.steps_nfactor == 0


def test_seed_number_and_random_seed_from_the_injected_rng():
    assert run("--seed 42")[0].base.noise_seed == 42
    rng = RecordingRng(123456)
    result = run("--seed random", rng=rng)[0]
    assert result.base.noise_seed == 123456 and rng.calls == [(0, 1 << 24)]
    assert result.refiner.noise_seed == 1


def test_random_seed_is_reproducible_with_a_seeded_rng(seeded_rng):
    import random
    first = run("--s random", rng=seeded_rng)[0].base.noise_seed
    again = run("--s random", rng=random.Random(1234))[0].base.noise_seed
    assert first == again and 0 <= first <= 1 << 24


@pytest.mark.parametrize("text, aspect, orientation, scale", [
    ("--aspect 3:2", "3:2", "", 1.22),
    ("--aspect 2:1 --portrait", "2:1", "portrait", 1.22),
    ("--a 16:9 --landscape --medium", "16:9", "landscape", 1.0),
    ("--landscape --portrait", "1:1", "portrait", 1.22),
    ("--portrait --landscape", "1:1", "portrait", 1.22),
    ("--small", "1:1", "", 1.0),
    ("--large --small", "1:1", "", 1.22),
    ("--medium --small", "1:1", "", 1.0),
    ("--aspect 1:9", "1:6", "", 1.22),
    ("--aspect nonsense", "4:3", "", 1.22),   # a bad value leaves the setting as it was
])
def test_image_shape_arguments(text, aspect, orientation, scale):
    start = GenerationSettings()
    start.image.aspect_ratio = "1:1" if "nonsense" not in text else "4:3"
    result = run(text, start=start)[0]
    assert (result.image.aspect_ratio, result.image.orientation, result.image.scale) == (aspect, orientation, scale)


def test_batch_size_and_cfg_adjust():
    result = run("--batch-size 3 --cfg-adjust -0.3")[0]
    assert result.image.batch_size == 3
    assert result.base.cfg == 3.2  # StageParams fall-back cfg 3.5 - 0.3, cleanly rounded


def test_style_is_applied_first_then_the_arguments(small_styles):
    result, warnings = run("a cat --cfg-shift 1 --style FANCY", small_styles)
    assert result.style == "FANCY"
    assert result.base.prompt == "Fancy a cat art"
    assert result.base.cfg == 4.7
    assert warnings == []


def test_style_name_falls_back_to_a_case_insensitive_match(small_styles):
    assert run("--style fancier", small_styles)[0].style == "FANCIER"


def test_unknown_style_warns_and_keeps_the_settings(small_styles):
    result, warnings = run("a cat --style NOPE", small_styles)
    assert result.style == "PLAIN" and result.base.prompt == "Base of. a cat"
    assert any("NOPE" in w and "FANCY" in w for w in warnings)
    assert any("no styles" in w for w in run("--style X")[1])


def test_result_is_a_new_object_and_records_the_full_text(small_styles):
    start = small_styles.apply(GenerationSettings(), "PLAIN")
    before = copy.deepcopy(start)
    result = apply_inline_prompt(start, parse_inline_prompt("  a cat \n --seed 3 --aspect 3:2 "), small_styles)
    assert start == before
    assert result.prompt == "a cat\n--seed 3 --aspect 3:2"
    assert result.image is not start.image and result.base is not start.base


def test_builtin_default_flow_matches_the_spec_example(builtin_styles):
    start = builtin_styles.apply(GenerationSettings(), "ULTRAPHOTO")
    result = apply_inline_prompt(start, parse_inline_prompt("a cat --aspect 3:2 --portrait --seed 5 --upscale off"),
                                 builtin_styles)
    assert (result.base.sampler, result.base.scheduler, result.base.steps, result.base.steps_start) == \
        ("dpmpp_2m_sde", "beta", 16, 3)
    assert result.base.noise_seed == 5 and result.refiner.noise_seed == 1
    assert "a cat" in result.base.prompt and "$@" not in result.base.prompt and "{" not in result.base.prompt

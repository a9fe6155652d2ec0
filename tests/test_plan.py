"""The one generation plan (tinybreaker_ext/plan.py): style, fields and inline arguments → every stage's numbers."""

import random

import pytest

from tinybreaker_ext import params as fields
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.plan import BATCH_SIZE_MAX, ImageRequest, make_plan
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.sampling.schedules import compute_sigmas, discrete_sigmas, sd1_sigmas, timestep_of

ON = TinyBreakerParams(enabled=True)


def plan(text="", styles=None, *, style=None, negative="", width=1024, height=1024, seed=1, batch_size=1,
         rng=None, **field_values):
    style = style or ("PLAIN" if styles else "none")
    styles = styles or StyleLibrary.load_builtin()
    return make_plan(ON.replace(style=style, **field_values),
                     ImageRequest(text, negative, width, height, seed, batch_size), styles, rng=rng)


class RecordingRng:
    def __init__(self, value):
        self.value, self.calls = value, []

    def randint(self, a, b):
        self.calls.append((a, b))
        return self.value


# -- texts ---------------------------------------------------------------------------------------------------------
def test_prompt_and_negative_go_through_the_style_templates(small_styles):
    texts = plan("a cat --no dogs", small_styles, negative="blurry").texts()
    assert (texts.base_prompt, texts.base_negative) == ("Base of. a cat", "bad base, blurry, dogs")
    assert (texts.refine_prompt, texts.refine_negative) == ("Refined, a cat", "bad refiner. blurry, dogs")


def test_empty_prompt_and_no_negative_remove_the_blocks(small_styles):
    texts = plan("", small_styles).texts()
    assert (texts.base_prompt, texts.base_negative) == ("Base of", "bad base")
    assert (texts.refine_prompt, texts.refine_negative) == ("Refined", "bad refiner")


def test_without_templates_the_texts_are_taken_as_they_are():
    styles = StyleLibrary().load_text("[EMPTY]\n")
    texts = plan("a cat --no dogs", styles, style="EMPTY").texts()
    assert (texts.base_prompt, texts.base_negative, texts.refine_prompt, texts.refine_negative) == (
        "a cat", "dogs", "a cat", "dogs")


def test_refine_argument_reaches_only_the_refine_template(small_styles):
    assert plan("a cat --refine sharp fur", small_styles).texts().refine_prompt == "Refined, sharp fur. a cat"
    assert plan("a cat --refine !sharp fur", small_styles).texts().refine_prompt == "Refined, sharp fur."
    assert plan("a cat --refine sharp", small_styles).texts().base_prompt == "Base of. a cat"


def test_each_prompt_of_a_batch_brings_its_own_no_and_refine_texts(small_styles):
    made = plan("a cat", small_styles)
    texts = made.texts("a dog --no fleas --refine wet", "blurry")
    assert texts.base_prompt == "Base of. a dog" and texts.base_negative == "bad base, blurry, fleas"
    assert texts.refine_prompt == "Refined, wet. a dog"


# -- shifts, levels, seeds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift, expected", [(-1, 3.2), (1, 3.6), (2, 3.8), (-2, 3.0), (0, 3.4), (10, 5.4)])
def test_cfg_shift_moves_the_base_cfg_by_a_fifth_per_step(small_styles, shift, expected):
    made = plan(f"--cfg-shift {shift}", small_styles)
    assert made.base.cfg == expected  # exact: no 3.1999999999999997
    assert made.refine.cfg == 2.0
    assert made.params.cfg_shift == shift
    assert made.recorded_params().base_cfg == 3.4 and made.recorded_params().cfg_shift == shift


def test_the_cfg_shift_field_and_the_inline_argument_are_the_same_thing(small_styles):
    assert plan("", small_styles, cfg_shift=3).base == plan("--c 3", small_styles).base


def test_image_shift_adds_to_the_refine_seed_and_variant_sets_it(small_styles):
    assert plan("--image-shift 3", small_styles).refine.noise_seed == 4
    assert plan("--i -1", small_styles).refine.noise_seed == 0
    assert plan("--variant 9", small_styles).refine.noise_seed == 9
    assert plan("--i 3 --variant 9", small_styles).refine.noise_seed == 9  # variant is applied later
    assert plan("--i 3", small_styles).seed == 1
    with pytest.raises(ParameterError) as error:
        plan("--i -2", small_styles)
    assert error.value.field == "image_shift"


@pytest.mark.parametrize("text, expected", [("--upscale", True), ("--u on", True), ("--upscale off", False)])
def test_upscale_switch(text, expected):
    assert plan(text, upscale=not expected).params.upscale is expected


@pytest.mark.parametrize("value, expected", [
    ("none", 0.0), ("minimal", 0.2), ("low", 0.4), ("normal", 0.6), ("high", 0.8), ("veryhigh", 1.0),
    ("maximum", 1.2), ("1", 0.8), ("-1", 0.4), ("-3", 0.0), ("-10", 0.0), ("5", 1.6),
])
def test_upscale_noise_levels_and_steps(small_styles, value, expected):
    assert plan(f"--upscale-noise {value}", small_styles).upscaler.extra_noise == expected


@pytest.mark.parametrize("value, expected", [
    ("none", -10), ("minimal", -2), ("low", -1), ("normal", 0), ("high", 1), ("veryhigh", 2), ("maximum", 3),
    ("5", 5), ("-4", -4), ("HIGH", 1), ("20", 10), ("-100", -10),
])
def test_detail_level_is_the_refine_step_factor(value, expected):
    made = plan(f"--detail-level {value}", detail_level=7)
    assert made.params.detail_level == expected
    assert made.refine.steps_nfactor == (-10000 if expected == fields.DETAIL_LEVEL_NONE else expected)
    assert made.base.steps_nfactor == 0
    assert (made.refine_steps == 0) == (expected == fields.DETAIL_LEVEL_NONE)


def test_out_of_range_inline_values_are_clamped_with_a_warning_naming_the_range():
    made = plan("--detail-level 20 --cfg-shift 99")
    assert (made.params.detail_level, made.params.cfg_shift) == (10, 20)
    assert any("--detail-level 20" in w and "-10 to 10" in w for w in made.warnings)
    assert any("--cfg-shift 99" in w for w in made.warnings)


def test_seed_number_and_random_seed_from_the_injected_rng():
    assert plan("--seed 42").seed == 42
    rng = RecordingRng(123456)
    made = plan("--seed random", rng=rng)
    assert made.seed == 123456 and made.base.noise_seed == 123456 and rng.calls == [(0, 1 << 24)]
    assert made.refine.noise_seed == 1  # the refine seed is the style's, not the base seed
    assert plan("", seed=-1, rng=RecordingRng(5)).seed == 5  # -1 is random everywhere


def test_random_seed_is_reproducible_with_a_seeded_rng(seeded_rng):
    first = plan("--s random", rng=seeded_rng).seed
    assert first == plan("--s random", rng=random.Random(1234)).seed and 0 <= first <= 1 << 24


def test_seeds_past_the_largest_one_are_refused():
    with pytest.raises(ParameterError) as error:
        plan("", seed=2 ** 64 - 1, batch_size=2)
    assert error.value.field == "seed"


# -- size and batch --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [
    ("--aspect 3:2", (1536, 1024)),             # a named ratio computes the size anew, large by default
    ("--aspect 3:2 --portrait", (1024, 1536)),
    ("--a 16:9 --landscape --medium", (1360, 768)),
    ("--landscape --portrait", (512, 640)),     # an orientation alone turns the current size
    ("--small", (1152, 912)),                   # a scale alone keeps the current ratio (640x512 = 5:4)
    ("--aspect 1:9", (512, 3056)),              # clamped to 1:6
    ("--aspect nonsense", (640, 512)),          # a bad value leaves the size as it was
])
def test_image_shape_arguments(text, size):
    made = plan(text, width=640, height=512)
    assert (made.width, made.height) == size


def test_without_a_requested_size_the_reference_default_is_1_to_1_large():
    made = make_plan(ON, ImageRequest("a cat", seed=1), StyleLibrary.load_builtin())
    assert (made.width, made.height) == (1248, 1248)


def test_sizes_must_be_whole_latents_and_the_base_rounds_up_to_patches():
    made = plan("", width=72, height=40)
    assert (made.base_width, made.base_height) == (80, 48)
    with pytest.raises(ParameterError) as error:
        plan("", width=70, height=40)
    assert error.value.field == "width"


def test_batch_size_from_the_prompt_is_clamped():
    assert plan("--batch-size 3").batch_size == 3
    made = plan("--batch-size 100000")
    assert made.batch_size == BATCH_SIZE_MAX and any("100000" in w for w in made.warnings)
    assert plan("", batch_size=2, seed=10).seeds == [10, 11]


def test_a_size_far_from_pixarts_trained_area_is_a_warning():
    assert any("area PixArt was trained on" in w for w in plan("", width=64, height=64).warnings)
    assert not any("area PixArt" in w for w in plan("--aspect 3:2").warnings)


# -- styles --------------------------------------------------------------------------------------------------------
def test_style_is_applied_first_then_the_arguments(small_styles):
    made = plan("a cat --cfg-shift 1 --style FANCY", small_styles)
    assert made.params.style == "FANCY" and made.texts().base_prompt == "Fancy a cat art"
    assert made.base.cfg == 4.7 and made.warnings == ()


def test_style_name_falls_back_to_a_case_insensitive_match(small_styles):
    assert plan("--style fancier", small_styles).params.style == "FANCIER"


def test_unknown_style_warns_and_keeps_the_fields(small_styles):
    made = plan("a cat --style NOPE", small_styles)
    assert made.params.style == "PLAIN" and made.texts().base_prompt == "Base of. a cat"
    assert any("NOPE" in w and "FANCY" in w for w in made.warnings)


def test_builtin_default_flow_matches_the_reference_example():
    made = plan("a cat --aspect 3:2 --portrait --seed 5 --upscale off", style="ULTRAPHOTO")
    assert (made.base.sampler, made.base.scheduler, made.base.steps, made.base.steps_start) == (
        "dpmpp_2m_sde", "beta", 16, 3)
    assert made.seed == 5 and made.refine.noise_seed == 1 and (made.width, made.height) == (1024, 1536)
    assert "a cat" in made.texts().base_prompt and "$@" not in made.texts().base_prompt


# -- refine numbers --------------------------------------------------------------------------------------------------
KARRAS_STYLE = """
[KARRAS]
refiner.sampler = "dpmpp_2m"
refiner.scheduler = "karras"
refiner.steps = 20
refiner.steps_start = 14
"""


def test_refine_strength_comes_from_sd1s_table_not_pixarts():
    styles = StyleLibrary().load_text(KARRAS_STYLE)
    made = plan("", styles, style="KARRAS")
    first_sigma = compute_sigmas(sd1_sigmas(), sampler="dpmpp_2m", scheduler="karras", steps=20, steps_start=14)[0]
    assert made.refine_sigmas[0] == first_sigma
    assert made.refine_strength == round((int(timestep_of(first_sigma, sd1_sigmas())) + 1) / 1000, 3) == 0.07
    wrong_table = discrete_sigmas("scaled_linear")  # PixArt's betas spaced like SD1's: the old bug
    assert made.refine_strength != round((int(timestep_of(first_sigma, wrong_table)) + 1) / 1000, 3)


# The reference's refine windows (styles_v03.ini): (style, executed steps, first sigma, SD1 start timestep).
REFINE_WINDOWS = [("PHOTO", 4, 0.752, 271), ("ULTRAPHOTO", 10, 1.277, 428), ("DARKFAN80", 5, 0.932, 333),
                  ("PAINTING", 3, 0.494, 166), ("COMIC", 4, 0.613, 217), ("PIXEL_ART", 3, 0.400, 125),
                  ("COLOR_INK", 2, 0.402, 126), ("REALISTIC_WAIFU_Z", 12, 1.503, 478), ("LITTLE_TOY", 5, 1.024, 361)]


@pytest.mark.parametrize("style, steps, first_sigma, timestep", REFINE_WINDOWS)
def test_each_styles_refine_window_and_strength(style, steps, first_sigma, timestep):
    made = plan("", style=style)
    assert made.refine_steps == steps
    assert float(made.refine_sigmas[0]) == pytest.approx(first_sigma, abs=5e-4)
    assert made.refine_strength == (timestep + 1) / 1000


@pytest.mark.parametrize("level, steps, first_sigma", [(-2, 3, 0.527), (-1, 4, 0.752), (0, 5, 1.024),
                                                       (1, 6, 1.376), (2, 7, 1.859), (3, 8, 2.558)])
def test_detail_level_moves_the_refine_start_like_the_reference(level, steps, first_sigma):
    made = plan("", style="LITTLE_TOY", detail_level=level)  # the defaults' refiner: deis / ddim_uniform 11 from 6
    assert made.refine_steps == steps and float(made.refine_sigmas[0]) == pytest.approx(first_sigma, abs=5e-4)


@pytest.mark.parametrize("scheduler", ["normal", "karras", "ddim_uniform", "simple", "beta", "exponential"])
def test_refine_steps_and_strength_fields_take_the_last_steps_of_a_longer_schedule(scheduler):
    styles = StyleLibrary().load_text(f'[S]\nrefiner.sampler = "euler"\nrefiner.scheduler = "{scheduler}"\n'
                                      "refiner.steps = 11\nrefiner.steps_start = 6\n")
    made = plan("", styles, style="S", refine_steps=4, refine_strength=0.25)
    expected = compute_sigmas(sd1_sigmas(), sampler="euler", scheduler=scheduler, steps=16, steps_start=12)
    assert made.refine_steps == 4 and (made.refine.steps, made.refine.steps_start) == (16, 12)
    assert made.refine_sigmas.tolist() == expected.tolist()
    assert made.refine_strength == 0.25  # the webui mode's host sampler gets exactly what was asked
    only_steps = plan("", styles, style="S", refine_steps=8)
    assert only_steps.refine_steps == 8 and only_steps.refine_strength == plan("", styles, style="S").refine_strength


def test_the_refine_can_be_turned_off_only_by_detail_level_none():
    made = plan("--detail-level none", refine_steps=5, refine_strength=0.5)
    assert made.refine_steps == 0 and len(made.refine_sigmas) == 0


def test_base_fields_replace_the_styles_values():
    made = plan("", style="PHOTO", base_sampler="euler", base_scheduler="karras", base_steps=8, base_cfg=5.0)
    assert (made.base.sampler, made.base.scheduler, made.base.steps, made.base.steps_start, made.base.cfg) == (
        "euler", "karras", 8, 2, 5.0)
    assert made.base_steps == 6


def test_a_base_window_with_no_step_names_the_field():
    styles = StyleLibrary().load_text("[S]\nbase.steps = 4\nbase.steps_start = 4\n")
    with pytest.raises(ParameterError) as error:
        plan("", styles, style="S")
    assert error.value.field == "base_steps"


def test_upscaler_size_and_output_size():
    made = plan("--upscale on", upscale_by=1.5, width=640, height=512)
    assert made.output_size == (960, 768)
    assert plan("", width=640, height=512).output_size == (640, 512)


def test_the_enhancer_refines_at_the_upscaled_size_and_saves_the_original_size():
    made = plan("--upscale enhancer", upscale_by=2.5, width=640, height=512)
    assert (made.params.upscale, made.params.upscale_mode) == (True, "enhancer")
    assert made.upscaled_size == (1600, 1280) and made.output_size == (640, 512)
    summary = made.summary()
    assert summary["output_size"] == [640, 512] and summary["upscaled_size"] == [1600, 1280]
    assert plan("", width=640, height=512).summary()["upscaled_size"] is None
    assert plan("--u upscaler", upscale_mode="enhancer", upscale_by=2.0, width=640, height=512).output_size == \
        (1280, 1024)


def test_the_enhancers_canvas_counts_against_the_upscaled_area_limit():
    from tinybreaker_ext.limits import AreaLimits, LimitError

    request = ImageRequest("", width=1024, height=1024, seed=1, area_limits=AreaLimits(upscaled=2048 * 2048))
    with pytest.raises(LimitError) as error:
        make_plan(ON.replace(upscale=True, upscale_by=3.0, upscale_mode="enhancer"), request,
                  StyleLibrary.load_builtin())
    assert error.value.field == "upscale_by" and "3072x3072" in str(error.value)


def test_the_upscale_model_comes_from_the_field_or_the_inline_argument():
    assert plan("", upscale_model="None").params.pre_upscaler is None
    assert plan("", upscale_model="4x-UltraSharp").params.pre_upscaler == "4x-UltraSharp"
    made = plan("--upscale-model R-ESRGAN 4x+ --upscale", upscale_model="4x-UltraSharp")
    assert made.params.pre_upscaler == "R-ESRGAN 4x+" and made.params.upscale_model == "R-ESRGAN 4x+"
    assert plan("--upscale-model none", upscale_model="4x-UltraSharp").params.pre_upscaler is None


def test_an_upscale_model_without_the_tiny_upscaler_is_a_warning():
    assert any("upscale_model '4x-UltraSharp' is unused" in note
               for note in plan("", upscale_model="4x-UltraSharp").warnings)
    assert not any("upscale_model" in note for note in plan("--upscale", upscale_model="4x-UltraSharp").warnings)


def test_a_size_from_inline_arguments_snaps_to_the_front_ends_size_step():
    made = make_plan(ON, ImageRequest("--aspect 16:9", width=1024, height=1024, seed=1, size_step=64),
                     StyleLibrary.load_builtin())
    assert (made.width, made.height) == (1664, 960) and any("size step 64" in w for w in made.warnings)
    assert (make_plan(ON, ImageRequest("", width=1000, height=1000, seed=1, size_step=64),
                      StyleLibrary.load_builtin()).width) == 1000  # a size the user typed is left alone

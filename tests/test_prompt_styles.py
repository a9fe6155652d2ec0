import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from builders.fixtures_prompt import SMALL_STYLES, write_style_dir
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.prompt.styles import StyleError, StyleLibrary, typed_ini_value
from tinybreaker_ext.prompt.templates import apply_template
from tinybreaker_ext.stage_params import StageParams

# docs/numerics.md "Styles", global defaults of v0.3: (sampler, scheduler, steps, start, end, cfg, seed)
SPEC_DEFAULTS = {
    "base": ("uni_pc", "simple", 12, 2, 10000, 3.4, 1),
    "refiner": ("deis", "ddim_uniform", 11, 6, 10000, 2.0, 1),
    "upscaler": ("dpmpp_2m", "karras", 16, 11, -1, 4.0, 1),
}
# styles_v03.ini per-style overrides (docs/numerics.md "Styles"): only the sampling values; anything unlisted is
# the default.
SPEC_OVERRIDES = {
    "PHOTO": {"base.steps": 14, "refiner.steps_start": 7, "refiner.cfg": 2.5},
    "ULTRAPHOTO": {"base.sampler": "dpmpp_2m_sde", "base.scheduler": "beta", "base.steps": 16, "base.steps_start": 3,
                   "refiner.sampler": "dpmpp_2m", "refiner.scheduler": "normal", "refiner.steps": 22,
                   "refiner.steps_start": 12, "refiner.cfg": 2.0},
    "DARKFAN80": {"base.sampler": "dpmpp_2m_sde", "refiner.steps": 12, "refiner.steps_start": 7},
    "LITTLE_TOY": {"refiner.steps": 11, "refiner.steps_start": 6},
    "PAINTING": {"base.sampler": "deis", "base.scheduler": "simple", "base.steps": 14, "base.steps_start": 3,
                 "base.cfg": 4.5, "refiner.sampler": "lms", "refiner.scheduler": "normal", "refiner.steps": 13,
                 "refiner.steps_start": 10, "refiner.cfg": 4.0, "upscaler.steps": 14, "upscaler.steps_start": 11},
    "COMIC": {"base.sampler": "deis", "base.scheduler": "sgm_uniform", "base.steps": 17, "base.steps_start": 2,
              "base.cfg": 5.2, "refiner.sampler": "lms", "refiner.scheduler": "beta", "refiner.steps": 14,
              "refiner.steps_start": 10, "refiner.cfg": 3.0},
    "PIXEL_ART": {"base.steps": 15, "base.steps_start": 3, "base.cfg": 4.5, "refiner.cfg": 8.0, "refiner.steps": 16,
                  "refiner.steps_start": 13, "upscaler.steps": 16, "upscaler.steps_start": 11},
    "COLOR_INK": {"refiner.steps": 8, "refiner.steps_start": 6, "refiner.cfg": 1.5, "upscaler.steps": 14,
                  "upscaler.steps_start": 11},
    "REALISTIC_WAIFU_X": {"base.sampler": "dpmpp_2m_sde", "base.scheduler": "beta", "base.steps": 16,
                          "base.steps_start": 3, "refiner.sampler": "dpmpp_2m", "refiner.scheduler": "normal",
                          "refiner.steps": 22, "refiner.steps_start": 12, "refiner.cfg": 2.0},
    "REALISTIC_WAIFU_Y": {"base.sampler": "dpmpp_2m_sde", "base.scheduler": "karras", "base.steps": 15,
                          "base.steps_start": 3, "base.cfg": 3.2, "refiner.sampler": "dpmpp_2m",
                          "refiner.scheduler": "normal", "refiner.steps": 22, "refiner.steps_start": 12,
                          "refiner.cfg": 1.8},
    "REALISTIC_WAIFU_Z": {"base.sampler": "dpmpp_2m_sde", "base.scheduler": "beta", "base.steps": 14,
                          "base.steps_start": 2, "refiner.sampler": "dpmpp_2m", "refiner.scheduler": "normal",
                          "refiner.steps": 24, "refiner.steps_start": 12, "refiner.cfg": 2.0},
    "none": {}, "CUSTOM1": {}, "CUSTOM2": {}, "CUSTOM3": {}, "CUSTOM4": {},
}
# Placeholder blocks and weights each template must keep (docs/numerics.md "Styles"): (key, fragments)
SPEC_TEMPLATE_MARKERS = [
    ("PHOTO", "base.prompt", ["{. $@}"]), ("PHOTO", "base.negative", ["{. $@}", ":0.6)"]),
    ("PHOTO", "refiner.negative", ["{. $@}", ":1.8)"]),
    ("ULTRAPHOTO", "base.prompt", ["{. $@}", ":1.1)"]), ("ULTRAPHOTO", "base.negative", ["{, $@}"]),
    ("ULTRAPHOTO", "refiner.prompt", ["{, $@}", ":1.2)"]), ("ULTRAPHOTO", "refiner.negative", ["{, $@}", ":1.8)"]),
    ("DARKFAN80", "base.prompt", ["{$@ .}", ":1.1)"]), ("DARKFAN80", "base.negative", ["{, $@}"]),
    ("LITTLE_TOY", "base.prompt", ["{. $@}"]), ("LITTLE_TOY", "refiner.prompt", ["{, $@}"]),
    ("PAINTING", "base.prompt", ["{$@}."]), ("PAINTING", "refiner.prompt", ["{, $@}", ":1.1)"]),
    ("PAINTING", "refiner.negative", ["{. $@}", ":1.2)"]), ("PAINTING", "upscaler.negative", [":1.2)"]),
    ("COMIC", "base.prompt", ["{$@}", ":1.2)"]), ("COMIC", "refiner.prompt", ["{, $@}"]),
    ("PIXEL_ART", "base.prompt", ["{$@}"]), ("PIXEL_ART", "base.negative", [":1.1)", "{, $@}"]),
    ("PIXEL_ART", "refiner.prompt", ["{, $@}", ":1.2)"]), ("PIXEL_ART", "refiner.negative", ["{, $@}"]),
    ("PIXEL_ART", "upscaler.prompt", [":1.2)"]),
    ("COLOR_INK", "base.prompt", ["{. $@}"]), ("COLOR_INK", "refiner.negative", ["{. $@}", ":2.0)"]),
    ("REALISTIC_WAIFU_X", "base.prompt", ["{. $@}"]), ("REALISTIC_WAIFU_X", "refiner.prompt", [":1.2)"]),
    ("REALISTIC_WAIFU_Y", "base.prompt", ["{. $@}", ":1.1)"]), ("REALISTIC_WAIFU_Y", "refiner.negative", [":1.8)"]),
    ("REALISTIC_WAIFU_Z", "base.prompt", ["{. $@}", ":1.1)"]), ("REALISTIC_WAIFU_Z", "refiner.prompt", [":1.1)"]),
]
ORDER = ["PHOTO", "ULTRAPHOTO", "DARKFAN80", "LITTLE_TOY", "PAINTING", "COMIC", "PIXEL_ART", "COLOR_INK",
         "REALISTIC_WAIFU_X", "REALISTIC_WAIFU_Y", "REALISTIC_WAIFU_Z", "none", "CUSTOM1", "CUSTOM2", "CUSTOM3",
         "CUSTOM4"]


def test_builtin_styles_load_cleanly_in_order(builtin_styles):
    assert builtin_styles.names() == ORDER
    assert builtin_styles.warnings == []


@pytest.mark.parametrize("name", ORDER)
def test_builtin_sampling_values_match_the_spec(builtin_styles, name):
    stages = builtin_styles.get(name)
    for stage, (sampler, scheduler, steps, start, end, cfg, seed) in SPEC_DEFAULTS.items():
        expected = {"sampler": sampler, "scheduler": scheduler, "steps": steps, "steps_start": start,
                    "steps_end": end, "cfg": cfg, "noise_seed": seed, "steps_nfactor": 0,
                    "extra_noise": 0.6 if stage == "upscaler" else 0.0}
        for key, value in SPEC_OVERRIDES[name].items():
            if key.startswith(stage + "."):
                expected[key.split(".")[1]] = value
        params = stages[stage]
        actual = {field: getattr(params, field) for field in expected}
        assert actual == expected, (name, stage)


@pytest.mark.parametrize("name, key, fragments", SPEC_TEMPLATE_MARKERS)
def test_builtin_templates_keep_the_placeholder_blocks_and_weights(builtin_styles, name, key, fragments):
    stage, field = key.split(".")
    text = getattr(builtin_styles.get(name)[stage], field)
    for fragment in fragments:
        assert fragment in text, (name, key, text)


@pytest.mark.parametrize("name", ORDER)
def test_builtin_templates_produce_clean_prompts(builtin_styles, name):
    for stage, params in builtin_styles.get(name).items():
        for template in (params.prompt, params.negative):
            for value in ("a red fox", ""):
                text = apply_template(template, value)
                assert "$@" not in text and "{" not in text and "}" not in text
                if value and "$@" in template:
                    assert value in text


def test_none_style_has_empty_base_texts_and_the_default_refiner_negative(builtin_styles):
    stages = builtin_styles.get("none")
    assert stages["base"].prompt == "" and stages["base"].negative == ""
    assert stages["refiner"].negative.endswith("{. $@}") and ":1.8)" in stages["refiner"].negative


# -- INI reading --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ('"text"', "text"), ("'text'", "text"), ('""', ""), ('"12"', "12"), ("12", 12), ("3.5", 3.5), ("3.", 3.0),
    (".5", 0.5), ("true", True), ("False", False), ("-1", "-1"), ("uni_pc", "uni_pc"), ("1.2.3", "1.2.3"),
    ("²", "²"),
])
def test_values_are_typed_like_the_reference(raw, expected):
    value = typed_ini_value(raw)
    assert value == expected and type(value) is type(expected)


def test_empty_unquoted_values_are_dropped_and_minus_one_becomes_an_int():
    library = StyleLibrary().load_text('base.steps = 9\n[A]\nbase.steps =\nupscaler.steps_end = -1\n')
    assert library.get("A")["base"].steps == 9
    assert library.get("A")["upscaler"].steps_end == -1


def test_implicit_defaults_and_inheritance(small_styles):
    plain, fancy, fancier = (small_styles.get(name) for name in ("PLAIN", "FANCY", "FANCIER"))
    assert plain["base"].prompt == "Base of{. $@}" and plain["base"].cfg == 3.4
    assert fancy["base"].prompt == "Fancy {$@} art" and fancy["base"].cfg == 4.5 and fancy["base"].steps == 12
    assert fancier["base"].prompt == "Fancy {$@} art" and fancier["base"].cfg == 4.5 and fancier["base"].steps == 20
    assert plain["upscaler"].extra_noise == 0.6
    # fields no file sets keep StageParams' fall-backs (docs/numerics.md "Styles")
    assert plain["refiner"].sampler == StageParams().sampler


def test_explicit_default_section_works_too():
    library = StyleLibrary().load_text("[__default__]\nbase.steps = 7\n[A]\nbase.cfg = 2.5\n")
    assert library.names() == ["A"]
    assert (library.get("A")["base"].steps, library.get("A")["base"].cfg) == (7, 2.5)


def test_keys_are_case_insensitive_and_colon_works_as_separator():
    library = StyleLibrary().load_text("[A]\nBASE.Steps: 5\n")
    assert library.get("A")["base"].steps == 5


def test_unknown_keys_bad_values_and_missing_bases_warn():
    library = StyleLibrary().load_text(
        "base.steps = 9\n[A]\nimage.aspect = 3:2\nbase.steps = many\nbase.cfg = true\n[B:MISSING]\nbase.cfg = 2.0\n",
        source="mine.ini")
    warnings = "\n".join(library.warnings)
    assert "image.aspect" in warnings and "base.steps" in warnings and "base.cfg" in warnings
    assert "MISSING" in warnings and "mine.ini" in warnings
    assert library.get("A")["base"].steps == 9
    assert library.get("B")["base"].steps == 9 and library.get("B")["base"].cfg == 2.0


def test_percent_signs_are_kept():
    library = StyleLibrary().load_text('[A]\nbase.prompt = "100% cotton{, $@}"\n')
    assert library.get("A")["base"].prompt == "100% cotton{, $@}"


def test_multiline_values_continue_on_indented_lines():
    library = StyleLibrary().load_text('[A]\nbase.prompt = "one\n   two"\n')
    assert library.get("A")["base"].prompt == "one\ntwo"


@pytest.mark.parametrize("text, fragment", [
    ("[A]\nthis line has no separator\n", "line 2"),
    ("base.steps = 1\nbase.steps = 2\n", "line 2"),
    ("[A]\nbase.steps = 1\n[A]\n", "line 3"),
])
def test_broken_ini_raises_style_error_with_the_line_of_the_users_text(text, fragment):
    with pytest.raises(StyleError) as error:
        StyleLibrary().load_text(text, source="broken.ini")
    message = str(error.value)
    assert message.startswith("broken.ini: ") and fragment in message and "\n" not in message


# -- the library ----------------------------------------------------------------------------------------------------

def test_get_resolves_names_and_names_the_known_styles(small_styles):
    with pytest.raises(ParameterError) as error:
        small_styles.get("NOPE")
    assert error.value.field == "style" and "FANCY" in str(error.value)
    assert small_styles.get("fancy")["base"].cfg == 4.5
    assert small_styles.get("PLAIN")["upscaler"].cfg == StageParams().cfg


def test_later_text_overrides_only_the_keys_it_sets(builtin_styles):
    library = StyleLibrary.load_builtin().load_text("[PHOTO]\nbase.cfg = 5.0\n[MINE:PHOTO]\nbase.steps = 30\n")
    photo, mine = library.get("PHOTO"), library.get("MINE")
    assert photo["base"].cfg == 5.0 and photo["base"].steps == 14
    assert photo["base"].prompt == builtin_styles.get("PHOTO")["base"].prompt
    assert mine["base"].steps == 30 and mine["base"].cfg == 5.0 and mine["refiner"].cfg == 2.5
    assert library.names()[-1] == "MINE" and library.names()[:16] == ORDER


def test_new_style_without_base_starts_from_the_library_defaults():
    library = StyleLibrary.load_builtin().load_text("[NEW]\nbase.cfg = 6.0\n")
    new = library.get("NEW")
    assert new["base"].cfg == 6.0 and new["base"].sampler == "uni_pc" and new["refiner"].sampler == "deis"
    assert library.get("none")["upscaler"].extra_noise == 0.6


def test_load_dir_reads_versions_in_order_and_the_newest_wins(tmp_path):
    folder = write_style_dir(tmp_path / "user", {
        "styles_v03.ini": "base.steps = 3\n[OLD]\n[BOTH]\nbase.cfg = 3.0\n",
        "styles_v01.ini": "base.steps = 1\n[OLD]\nbase.cfg = 1.0\n[BOTH]\nbase.cfg = 1.0\n[ONLY_OLD]\n",
        "extra.ini": "[EXTRA:BOTH]\nbase.steps = 99\n",
        "deprecated.txt": "not loaded",
    })
    library = StyleLibrary().load_dir(folder)
    assert library.get("BOTH")["base"].cfg == 3.0 and library.get("BOTH")["base"].steps == 3
    assert library.get("OLD")["base"].steps == 3 and library.get("OLD")["base"].cfg == 1.0
    assert "ONLY_OLD" in library.names()
    assert library.get("EXTRA")["base"].steps == 99 and library.get("EXTRA")["base"].cfg == 3.0
    assert library.warnings == []


def test_an_existing_comfyui_install_folder_loads_as_it_is(tmp_path, builtin_styles):
    # the reference's layout: <install>/styles/styles_vNN.ini + order.conf, a full defaults section per file
    install = tmp_path / "ComfyUI-TinyBreaker"
    write_style_dir(install / "styles", {
        "styles_v03.ini": "# comment\nbase.sampler = \"euler\"\nbase.steps = 12\n\n[PHOTO]\n# theirs\n"
                          "base.prompt = \"Their photo{. $@}\"\n\n[THEIRS:PHOTO]\nbase.cfg = 9.0\n",
        "order.conf": "#\n# order\n#\nTHEIRS, PHOTO,\n",
    })
    library = StyleLibrary.load_builtin().load_dir(install)
    assert library.get("PHOTO")["base"].prompt == "Their photo{. $@}"
    assert library.get("PHOTO")["base"].sampler == "euler"
    assert library.get("THEIRS")["base"].cfg == 9.0
    assert library.get("ULTRAPHOTO") == builtin_styles.get("ULTRAPHOTO")
    assert library.names()[:16] == ORDER and library.names()[16] == "THEIRS"


def test_unreadable_files_are_skipped_with_a_warning_or_raise_when_strict(tmp_path):
    folder = write_style_dir(tmp_path / "user", {"styles_v03.ini": "[A]\nbase.cfg = 2.0\n"})
    (folder / "broken.ini").write_text("[B]\nno separator here\n", encoding="utf-8")
    (folder / "latin1.ini").write_bytes("[C]\nbase.prompt = \"caf\xe9\"\n".encode("latin-1"))
    library = StyleLibrary().load_dir(folder)
    assert library.names() == ["A"]
    assert any("broken.ini" in w for w in library.warnings) and any("latin1.ini" in w for w in library.warnings)
    with pytest.raises(StyleError):
        StyleLibrary().load_dir(folder, strict=True)
    with pytest.raises(StyleError):
        StyleLibrary().load_dir(tmp_path / "missing")


def test_small_styles_text_is_valid():
    assert StyleLibrary().load_text(SMALL_STYLES).warnings == []


# -- fuzzing: only StyleError may come out of arbitrary text --------------------------------------------------------

INI_LINES = st.one_of(
    st.text(max_size=30),
    st.builds(lambda name, parent: f"[{name}{':' + parent if parent else ''}]",
              st.text(max_size=8), st.one_of(st.none(), st.text(max_size=8))),
    st.builds(lambda stage, field, sep, value: f"{stage}.{field} {sep} {value}",
              st.sampled_from(["base", "refiner", "upscaler", "image", "BASE"]),
              st.sampled_from(["prompt", "steps", "cfg", "sampler", "extra_noise", "steps_end", "x"]),
              st.sampled_from(["=", ":"]),
              st.one_of(st.text(max_size=12), st.sampled_from(['"a{. $@}"', "12", "-1", "3.5", "true", "", "'",
                                                               '"', "1e400", "nan", "9" * 40, "%(x)s"]))),
)


_BUILTIN_FOR_FUZZING = StyleLibrary.load_builtin()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(INI_LINES, max_size=12))
def test_ini_like_text_raises_only_style_errors(lines):
    text = "\n".join(lines)
    try:
        library = copy.deepcopy(_BUILTIN_FOR_FUZZING).load_text(text)
    except StyleError:
        return
    for name in library.names():
        library.get(name)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_style_errors(text):
    try:
        StyleLibrary().load_text(text)
    except StyleError:
        pass

import pytest
from hypothesis import given, strategies as st

from builders.params import script_args
from tinybreaker_ext import params
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.params import TinyBreakerParams


def test_fields_and_dataclass_defaults_agree():
    defaults = TinyBreakerParams()
    assert params.FIELD_NAMES == tuple(defaults.as_dict())
    for spec in params.FIELDS:
        assert getattr(defaults, spec.name) == spec.default, spec.name
        assert isinstance(spec.default, spec.kind), spec.name


def test_positional_args_fill_fields_in_order_and_keep_trailing_defaults():
    result = params.from_script_args([True, "tb.safetensors", "", "COMIC", "euler", "karras", 14])
    assert result.enabled is True
    assert result.checkpoint == "tb.safetensors"
    assert result.style == "COMIC"
    assert result.base_sampler == "euler"
    assert result.base_scheduler == "karras"
    assert result.base_steps == 14
    assert result.refine_steps == 0 and result.t5_mode == "auto"


def test_single_dict_of_named_fields():
    result = params.from_script_args([{"enabled": True, "refine_strength": 0.35, "t5_mode": "CPU"}])
    assert (result.enabled, result.refine_strength, result.t5_mode) == (True, 0.35, "cpu")


def test_dict_first_ignores_the_host_filled_defaults_after_it():
    # The API copies the request's args over the UI defaults, so [dict] arrives as [dict, "", "", "PHOTO", ...].
    result = params.from_script_args([{"enabled": True, "style": "COMIC"}, "", "", "PHOTO", "style", "style", 0])
    assert (result.enabled, result.style) == (True, "COMIC")


def test_dict_after_positional_overrides_them():
    result = params.from_script_args([True, "a.safetensors", {"checkpoint": "b.safetensors"}])
    assert result.checkpoint == "b.safetensors"


@pytest.mark.parametrize("args, field, fragment", [
    ([{"base_steps": 101}], "base_steps", "from 0 to 100"),
    ([{"base_steps": 2.5}], "base_steps", "an integer"),
    ([{"base_cfg": "high"}], "base_cfg", "a number"),
    ([{"base_cfg": float("nan")}], "base_cfg", "a number"),
    ([{"refine_strength": -0.1}], "refine_strength", "from 0 to 1"),
    ([{"t5_mode": "fast"}], "t5_mode", "'auto', 'gpu', 'cpu', 'stream'"),
    ([{"enabled": "maybe"}], "enabled", "true or false"),
    ([{"base_steps": True}], "base_steps", "an integer"),
    ([{"stpes": 3}], "stpes", "unknown field"),
    ([{"checkpoint": 5}], "checkpoint", "a string"),
])
def test_bad_values_name_the_field_and_the_allowed_range(args, field, fragment):
    with pytest.raises(ParameterError) as caught:
        params.from_script_args(args)
    assert caught.value.field == field
    assert fragment in str(caught.value)
    assert field in str(caught.value)


def test_numbers_given_as_strings_or_integral_floats_are_accepted():
    result = params.from_dict({"base_steps": "12", "refine_steps": 8.0, "base_cfg": "3.4"})
    assert (result.base_steps, result.refine_steps, result.base_cfg) == (12, 8, 3.4)
    assert isinstance(result.refine_steps, int)


def test_infotext_round_trip_restores_every_field():
    original = TinyBreakerParams(enabled=True, checkpoint="tb1.safetensors", t5_file="t5.safetensors",
                                 style="ULTRAPHOTO", base_sampler="dpmpp_2m_sde", base_scheduler="beta",
                                 base_steps=16, base_cfg=3.2, refine_strength=0.43, refine_steps=10,
                                 refine_cfg=2.0, detail_level=-2, image_shift=3, cfg_shift=1, t5_mode="stream",
                                 upscale=True, upscale_by=2.5, upscale_noise=-1, refine_sampler="webui",
                                 upscale_mode="enhancer", upscale_model="R-ESRGAN 4x+")
    assert all(getattr(original, name) != spec.default for name, spec in params.FIELD_BY_NAME.items())
    written = params.to_infotext(original)
    assert written["TinyBreaker"] == "on"
    assert written["TinyBreaker base CFG"] == "3.2"
    as_text = {key: str(value) for key, value in written.items()}  # what a host's infotext parser gives back
    restored = params.from_dict(params.from_infotext(as_text))
    assert restored == original


def test_disabled_writes_nothing_and_foreign_infotext_restores_nothing():
    assert params.to_infotext(TinyBreakerParams()) == {}
    assert params.from_infotext({"Steps": "20", "Sampler": "Euler"}) == {}


def test_bad_value_in_pasted_infotext_is_skipped_not_raised():
    found = params.from_infotext({"TinyBreaker": "on", "TinyBreaker base steps": "lots", "TinyBreaker style": "X"})
    assert found == {"enabled": True, "style": "X"}


def test_options_schema_lists_every_field_with_ranges_and_dynamic_choices():
    schema = params.options_schema({"style": ["PHOTO", "none"]})
    names = [field["name"] for field in schema["fields"]]
    assert names == list(params.FIELD_NAMES)
    steps = schema["fields"][names.index("base_steps")]
    assert (steps["minimum"], steps["maximum"], steps["default"]) == (0, 100, 0)
    assert schema["fields"][names.index("style")]["choices"] == ["PHOTO", "none"]


def test_as_args_round_trips_through_positional_parsing():
    original = TinyBreakerParams(enabled=True, base_steps=9, detail_level=2)
    assert params.from_script_args(script_args(original)) == original


@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(),
                          st.dictionaries(st.text(max_size=12), st.integers(), max_size=3)), max_size=20))
def test_any_argument_list_gives_params_or_a_parameter_error(args):
    try:
        result = params.from_script_args(args)
    except ParameterError as error:
        assert error.field
    else:
        assert isinstance(result, TinyBreakerParams)


def test_argument_lists_stored_by_other_versions_are_accepted():
    """Queue tools store the positional list and replay it later, maybe after an update of the extension."""
    current = script_args(TinyBreakerParams(enabled=True, style="COMIC", base_steps=9, refine_sampler="webui",
                                            upscale=True, upscale_mode="enhancer", upscale_model="R-ESRGAN 4x+"))
    assert len(current) == 21
    older = current[:18]  # schema version 1: before refine_sampler was appended
    assert params.from_script_args(older) == TinyBreakerParams(enabled=True, style="COMIC", base_steps=9,
                                                               upscale=True)
    version_2 = current[:19]  # before upscale_mode and upscale_model were appended
    loaded = params.from_script_args(version_2)
    assert (loaded.refine_sampler, loaded.upscale_mode, loaded.upscale_model) == ("webui", "upscaler", "none")
    assert script_args(params.from_script_args(current)) == current
    warnings = []
    newer = current + ["a future field's value", 3]
    assert params.from_script_args(newer, warnings).upscale_model == "R-ESRGAN 4x+"
    assert len(warnings) == 1 and "2 argument value(s)" in warnings[0]
    assert params.options_schema()["version"] == params.SCHEMA_VERSION == 3


def test_the_upscale_fields_are_appended_after_every_older_field():
    """The positional order of versions 1 and 2 is kept: the new fields come last."""
    assert params.FIELD_NAMES[18:] == ("refine_sampler", "upscale_mode", "upscale_model")
    assert params.FIELD_NAMES.index("upscale_noise") == 17


def test_upscale_mode_is_a_fixed_choice_and_upscale_model_names_none_in_any_case():
    assert params.from_dict({"upscale_mode": "Enhancer"}).upscale_mode == "enhancer"
    with pytest.raises(ParameterError, match="upscale_mode.*'upscaler', 'enhancer'"):
        params.from_dict({"upscale_mode": "simple"})
    for none in ("none", "None", "", "  NONE "):
        assert params.from_dict({"upscale_model": none}).pre_upscaler is None
    assert params.from_dict({"upscale_model": " 4x-UltraSharp "}).pre_upscaler == "4x-UltraSharp"


def test_names_other_tools_write_for_a_choice_are_read_as_ours():
    assert params.from_dict({"base_sampler": "dpmpp_2m_sde_gpu"}).base_sampler == "dpmpp_2m_sde"
    assert params.from_dict({"base_sampler": "Euler_CFG_PP"}).base_sampler == "euler"


def test_every_argument_value_the_ui_sends_is_json_and_pickle_data():
    import json
    import pickle

    args = script_args(TinyBreakerParams(enabled=True, style="PHOTO", upscale=True))
    assert params.from_script_args(json.loads(json.dumps(args))) == params.from_script_args(args)
    assert params.from_script_args(pickle.loads(pickle.dumps(args))) == params.from_script_args(args)

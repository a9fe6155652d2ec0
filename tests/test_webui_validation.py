"""Bad requests fail from p.sample (hooks swallow exceptions) with an error the host API answers as a 4xx."""

import os

import pytest

from builders.fake_hosts import call_names, make_sd_model
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.webui import script_logic

fastapi = pytest.importorskip("fastapi", reason="the hosts' API layer; pip install fastapi")


def sample_error(env, args, p=None):
    p = p or env.make_p()
    with pytest.raises(fastapi.HTTPException) as caught:
        env.run(p, args)
    assert "engine.base" not in call_names() and "create_sampler" not in call_names()
    return caught.value


@pytest.mark.parametrize("args, field, fragment", [
    ([True, {"base_steps": "many"}], "base_steps", "expected an integer"),
    ([True, {"refine_strength": 1.5}], "refine_strength", "out of range"),
    ([{"enabled": True, "refine_stepz": 3}], "refine_stepz", "unknown field"),
    ([True, 5], "checkpoint", "expected a string"),  # positional slot 1 is the checkpoint name
    ([True, "", "", "PHOTO", "heun"], "base_sampler", "'euler'"),
    ([True, "", "", "NO_SUCH_STYLE"], "style", "unknown style"),
    ([True, "missing.safetensors"], "checkpoint", "tinybreaker_prototype1.safetensors"),  # lists what exists
    ([True, {"upscale": True, "upscale_model": "4x-Nope"}], "upscale_model",  # lists the host's upscalers
     "no upscaler named '4x-Nope'; its upscalers: 'Lanczos', 'R-ESRGAN 4x+', or 'none'"),
])
def test_bad_arguments_are_a_422_naming_the_field(tb_host, args, field, fragment):
    p = tb_host.make_p()
    script_logic.process(p, *args)  # never raises: the host would swallow it
    error = sample_error(tb_host, args, p)
    assert error.status_code == 422
    assert f"'{field}'" in error.detail and fragment in error.detail


def test_the_error_reads_the_same_where_a_queue_tool_records_str_of_it(tb_host):
    """agent-scheduler runs a queued task through the host's txt2img API function and stores ``str(exception)`` as
    the task's result; starlette before 0.28 (A1111's 0.26.1) gives HTTPException no ``__str__`` of its own, so
    Exception's is used and shows only the constructor's positional arguments."""
    p = tb_host.make_p()
    args = [True, "missing.safetensors"]
    script_logic.process(p, *args)
    error = sample_error(tb_host, args, p)
    for text in (str(error), BaseException.__str__(error)):
        assert "422" in text and "'checkpoint'" in text and "missing.safetensors" in text, text


def test_an_image_over_the_area_limit_is_a_422_before_anything_runs(tb_host):
    p = tb_host.make_p(width=8192, height=8192)
    error = sample_error(tb_host, [True], p)
    assert error.status_code == 422 and "'size'" in error.detail and "67.1 megapixels" in error.detail


def test_a_host_model_that_cannot_refine_is_named_in_the_error(tb_host):
    tb_host.shared.sd_model = make_sd_model(tb_host.name, is_sd1=False, is_sd3=True)
    error = sample_error(tb_host, [True])
    assert error.status_code == 422
    assert "SD3 loaded" in error.detail and "SD1 or SDXL" in error.detail


def test_forge_before_its_first_load_says_no_model(make_tb_host):
    env = make_tb_host("forge")

    class FakeInitialModel:  # Forge's placeholder before a checkpoint is loaded
        pass

    env.shared.sd_model = FakeInitialModel()
    error = sample_error(env, [True])
    assert "no model loaded" in error.detail


def test_missing_model_files_are_a_422_that_says_where_to_put_them(tb_host, tmp_path):
    tb_host.shared.cmd_opts.tinybreaker_dir = str(tmp_path)  # an empty --tinybreaker-dir
    error = sample_error(tb_host, [True])
    assert error.status_code == 422
    assert "TinyBreaker checkpoint not found" in error.detail and str(tmp_path) in error.detail


@pytest.mark.parametrize("args", [
    [False, {"base_steps": 500}],
    [{"enabled": False, "bogus": 1}],
    [False, 5],
])
def test_invalid_but_disabled_arguments_run_the_host_as_usual(tb_host, args):
    p = tb_host.make_p()
    assert script_logic.process(p, *args) is None
    tb_host.run(p, args)
    assert "original_sample" in call_names()


def test_valid_arguments_do_not_raise(tb_host):
    args = script_args(TinyBreakerParams(enabled=True, checkpoint=os.path.basename(tb_host.files["checkpoint"]),
                                         t5_file=os.path.basename(tb_host.files["t5"]), base_steps=5))
    tb_host.run(tb_host.make_p(), args)
    assert "cfg_denoiser.forward" in call_names()

"""X/Y/Z plot axes: added once to the host's xyz_grid script module; an axis sets an override on the copy of p
that the grid runs, and process() validates it like any other input."""

import types

import pytest

from builders.fake_hosts import ScriptClassData, calls_named
from builders.params import script_args
from tinybreaker_ext import params
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.webui import callbacks


def fake_xyz_module(scripts_module):
    """scripts/xyz_grid.py as the host loads it: module named 'xyz_grid.py', AxisOption with A1111's signature."""
    module = types.ModuleType("xyz_grid.py")

    def format_value_add_label(p, opt, x):
        return f"{opt.label}: {x}"

    class AxisOption:
        def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0,
                     choices=None, prepare=None):
            self.label = label
            self.type = type
            self.apply = apply
            self.format_value = format_value
            self.confirm = confirm
            self.cost = cost
            self.prepare = prepare
            self.choices = choices

    def do_nothing(p, x, xs):
        pass

    class Script(scripts_module.Script):
        def title(self):
            return "X/Y/Z plot"

    Script.__module__ = "xyz_grid.py"
    module.AxisOption = AxisOption
    module.axis_options = [AxisOption("Nothing", str, do_nothing), AxisOption("Seed", int, do_nothing)]
    module.Script = Script
    scripts_module.scripts_data.append(ScriptClassData(Script, "scripts/xyz_grid.py", "scripts", module))
    return module


def axis(module, label):
    (option,) = [option for option in module.axis_options if option.label == callbacks.XYZ_AXIS_PREFIX + label]
    return option


def test_axes_are_added_once(tb_host):
    module = fake_xyz_module(tb_host.tree["modules.scripts"])
    callbacks.add_xyz_axes()
    added = [option.label for option in module.axis_options if option.label.startswith(callbacks.XYZ_AXIS_PREFIX)]
    expected = {callbacks.XYZ_AXIS_PREFIX + spec.label.replace(" (0 = style)", "")
                for spec in params.FIELDS if spec.xyz}
    assert set(added) == expected and {"Style", "Base sampler", "Base schedule", "Refine sampler"} <= {
        label[len(callbacks.XYZ_AXIS_PREFIX):] for label in added}
    assert len(added) == len(set(added))
    callbacks.add_xyz_axes()  # a UI reload runs the callback again
    assert [option.label for option in module.axis_options if option.label.startswith(callbacks.XYZ_AXIS_PREFIX)] == added
    assert module.axis_options[0].label == "Nothing"  # the host's own axes are left alone


def test_axis_types_and_choices(tb_host):
    module = fake_xyz_module(tb_host.tree["modules.scripts"])
    callbacks.add_xyz_axes()
    assert axis(module, "Refine steps").type is int and axis(module, "Refine strength").type is float
    assert "PHOTO" in axis(module, "Style").choices()
    assert "euler" in axis(module, "Base sampler").choices()
    assert axis(module, "Refine sampler").choices() == ["tinybreaker", "webui"]
    assert "karras" in axis(module, "Base schedule").choices()
    assert axis(module, "Upscaler mode").choices() == ["upscaler", "enhancer"]
    assert axis(module, "Upscale model").choices() == ["none", "Lanczos", "R-ESRGAN 4x+"]


def test_without_the_xyz_script_nothing_is_added(tb_host, caplog):
    with caplog.at_level("INFO"):
        callbacks.add_xyz_axes()
    assert "XYZ plot script not found" in caplog.text


def test_an_axis_value_drives_the_run_even_with_the_accordion_off(tb_host):
    module = fake_xyz_module(tb_host.tree["modules.scripts"])
    callbacks.add_xyz_axes()
    p = tb_host.make_p()
    axis(module, "Refine steps").apply(p, 4, [4, 6])
    axis(module, "Style").apply(p, "COMIC", ["PHOTO", "COMIC"])
    tb_host.run(p, script_args(TinyBreakerParams(enabled=False)))
    assert len(calls_named("cfg_denoiser.forward")) == 4  # the reference refine ran 4 steps
    assert p.extra_generation_params["TinyBreaker style"] == "COMIC"


def test_an_invalid_axis_value_is_rejected_from_p_sample(tb_host):
    fastapi = pytest.importorskip("fastapi")
    module = fake_xyz_module(tb_host.tree["modules.scripts"])
    callbacks.add_xyz_axes()
    p = tb_host.make_p()
    axis(module, "Base steps").apply(p, 500, [500])
    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(p, script_args(TinyBreakerParams(enabled=True)))
    assert caught.value.status_code == 422 and "'base_steps'" in caught.value.detail

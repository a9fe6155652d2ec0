"""scripts/tinybreaker.py and preload.py executed the way the hosts execute them (script_loading.load_module:
module named after the file, not put in sys.modules; every Script subclass in its namespace registered)."""

import argparse
import importlib.util
import os
import sys

import pytest

from builders.fake_hosts import call_names, fake_gradio_module, load_script_file, run_txt2img
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_FILE = os.path.join(ROOT, "scripts", "tinybreaker.py")
ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_steps=2))


@pytest.fixture
def gradio_module(monkeypatch):
    """The real gradio when installed, else a stand-in (the script file only imports it)."""
    if importlib.util.find_spec("gradio") is None:
        monkeypatch.setitem(sys.modules, "gradio", fake_gradio_module())
    import gradio

    return gradio


@pytest.fixture
def loaded(tb_host, gradio_module):
    scripts = tb_host.tree["modules.scripts"]
    module = load_script_file(SCRIPT_FILE, scripts)
    return tb_host, scripts, module


def callback_counts(env):
    callback_map = env.tree["modules.script_callbacks"].callback_map
    return {name: len(callbacks) for name, callbacks in callback_map.items() if callbacks}


def test_exactly_one_always_visible_txt2img_script_is_registered(loaded):
    env, scripts, module = loaded
    assert module.__name__ == "tinybreaker.py" and "tinybreaker.py" not in sys.modules
    (data,) = scripts.scripts_data
    assert data.script_class is not scripts.Script and data.script_class.__name__ == "TinyBreakerScript"
    script = data.script_class()
    assert script.title() == "TinyBreaker"  # the API's alwayson_scripts key, case-insensitively
    assert script.show(True) is False
    assert script.show(False) is scripts.AlwaysVisible
    assert script.elem_id("enable") == "script_tinybreaker_enable"  # txt2img only: no tab prefix
    assert script.section == "accordions" and script.create_group is False


def test_callbacks_are_registered_once_and_again_after_a_ui_reload(loaded):
    env, scripts, _module = loaded
    expected = {"callbacks_ui_settings": 1, "callbacks_app_started": 1, "callbacks_before_ui": 1,
                "callbacks_script_unloaded": 1, "callbacks_infotext_pasted": 1}
    assert callback_counts(env) == expected
    env.tree["modules.script_callbacks"].clear_callbacks()  # "Apply and restart UI" re-executes script files
    scripts.scripts_data.clear()
    load_script_file(SCRIPT_FILE, scripts)
    assert callback_counts(env) == expected and len(scripts.scripts_data) == 1


def test_the_scripts_hooks_drive_the_first_pass(loaded):
    env, scripts, _module = loaded
    script = scripts.scripts_data[0].script_class()
    p = env.make_p()
    env.state.begin()
    run_txt2img(p, lambda q: script.process(q, *ARGS), lambda q: script.postprocess(q, None, *ARGS),
                process_batch_hook=lambda q: script.process_batch(q, *ARGS),
                postprocess_image_hook=lambda q: script.postprocess_image(q, None, *ARGS))
    assert "engine.base" in call_names() and "cfg_denoiser.forward" in call_names()  # the reference refine
    assert "sample" not in p.__dict__


def test_settings_callback_adds_the_tinybreaker_section(loaded):
    env, _scripts, _module = loaded
    env.tree["modules.script_callbacks"].ui_settings_callback()
    opts = env.shared.opts
    assert set(opts.data_labels) == {"tinybreaker_extra_dirs", "tinybreaker_style_dirs", "tinybreaker_t5_mode",
                                     "tinybreaker_compute_dtype", "tinybreaker_compile_pixart"}
    assert opts.data["tinybreaker_compile_pixart"] is False  # off by default
    assert opts.data["tinybreaker_t5_mode"] == "auto" and opts.data["tinybreaker_extra_dirs"] == ""
    assert {info.section for info in opts.data_labels.values()} == {("tinybreaker", "TinyBreaker")}
    assert opts.data_labels["tinybreaker_t5_mode"].component_args == {"choices": ["auto", "gpu", "cpu", "stream"]}


def test_app_started_adds_our_routes(loaded):
    fastapi = pytest.importorskip("fastapi")
    env, _scripts, _module = loaded
    app = fastapi.FastAPI()
    env.tree["modules.script_callbacks"].app_started_callback(None, app)  # demo is None with --nowebui
    paths = {route.path for route in app.routes}
    assert {"/tinybreaker/v1/models", "/tinybreaker/v1/options", "/tinybreaker/v1/styles"} <= paths


def test_unloading_the_script_releases_our_models(loaded, monkeypatch):
    env, _scripts, _module = loaded
    from tinybreaker_ext import pipeline

    monkeypatch.setitem(pipeline._pipelines, ("checkpoint", "t5"), object())
    for callback in env.tree["modules.script_callbacks"].callback_map["callbacks_script_unloaded"]:
        callback()
    assert pipeline._pipelines == {}


def test_width_and_height_are_picked_up_for_the_size_presets(loaded):
    env, scripts, _module = loaded
    script = scripts.scripts_data[0].script_class()
    width, height, other = object(), object(), object()
    script.after_component(width, elem_id="txt2img_width")
    script.after_component(other, elem_id="txt2img_steps")
    script.after_component(height, elem_id="txt2img_height")
    assert script.size_targets == {"txt2img_width": width, "txt2img_height": height}


def test_preload_adds_the_models_folder_flag():
    spec = importlib.util.spec_from_file_location("preload.py", os.path.join(ROOT, "preload.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.preload(parser)
    assert parser.parse_args([]).tinybreaker_dir is None
    assert parser.parse_args(["--tinybreaker-dir", "/models/tb"]).tinybreaker_dir == "/models/tb"

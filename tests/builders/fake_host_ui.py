"""Fake host UI side: ``modules.scripts`` (Script base class, script file loading), ``modules.script_callbacks``,
``modules.ui_components`` / ``modules.ui_common`` (built on a real gradio when one is importable) and a minimal
stand-in ``gradio`` module for executing the script file without gradio.
"""

from __future__ import annotations

import inspect
import types
from collections import namedtuple


def new_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    module.__path__ = []  # every fake is a package, so submodules import
    return module


CALLBACK_CATEGORIES = ("app_started", "ui_settings", "before_ui", "script_unloaded", "model_loaded", "ui_tabs",
                       "infotext_pasted")


def script_callbacks_module() -> types.ModuleType:
    module = new_module("modules.script_callbacks")
    module.callback_map = {f"callbacks_{category}": [] for category in CALLBACK_CATEGORIES}

    def make_register(category):
        def register(callback, *, name=None):
            module.callback_map[f"callbacks_{category}"].append(callback)

        register.__name__ = f"on_{category}"
        return register

    for category in CALLBACK_CATEGORIES:
        setattr(module, f"on_{category}", make_register(category))

    def clear_callbacks():
        for callbacks in module.callback_map.values():
            callbacks.clear()

    def app_started_callback(demo, app):
        for callback in module.callback_map["callbacks_app_started"]:
            callback(demo, app)

    def before_ui_callback():
        for callback in module.callback_map["callbacks_before_ui"]:
            callback()

    def ui_settings_callback():
        for callback in module.callback_map["callbacks_ui_settings"]:
            callback()

    module.clear_callbacks = clear_callbacks
    module.app_started_callback = app_started_callback
    module.before_ui_callback = before_ui_callback
    module.ui_settings_callback = ui_settings_callback
    return module


# --- modules.scripts (A1111 modules/scripts.py) -------------------------------------------------------------------
AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])


class Script:
    """The base class of modules/scripts.py with its public attributes and hook signatures (bodies trimmed)."""

    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def post_sample(self, p, ps, *args):
        pass

    def postprocess_image(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def describe(self):
        return ""

    def elem_id(self, item_id):
        import re

        need_tabname = self.show(True) == self.show(False)
        tabkind = 'img2img' if self.is_img2img else 'txt2img'
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r'[^a-z_0-9]', '', re.sub(r'\s', '_', self.title().lower()))
        return f'script_{tabname}{title}_{item_id}'

    def before_hr(self, p, *args):
        pass


def load_script_file(path: str, scripts_module: types.ModuleType) -> types.ModuleType:
    """``script_loading.load_module`` + ``register_scripts_from_module``: the module is named after the file's
    basename and is NOT put in sys.modules; every Script subclass in its namespace is registered."""
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for script_class in module.__dict__.values():
        if inspect.isclass(script_class) and issubclass(script_class, scripts_module.Script):
            scripts_module.scripts_data.append(ScriptClassData(script_class, path, os.path.dirname(path), module))
    return module


# --- UI helpers (need a real gradio; built on first use so the tree itself never imports gradio) -------------------
def ui_components_module() -> types.ModuleType:
    module = new_module("modules.ui_components")
    cache: dict[int, dict] = {}

    def build(gr) -> dict:
        if int(gr.__version__.split(".")[0]) >= 4:
            _apply_forge_gradio_patches(gr)

        class ToolButton(gr.Button):  # A1111: (FormComponent, gr.Button); Forge: value="" first, keyword-safe
            webui_do_not_create_gradio_pyi_thank_you = True

            def __init__(self, value="", *args, elem_classes=None, **kwargs):
                super().__init__(*args, elem_classes=["tool", *(elem_classes or [])], value=value, **kwargs)

            def get_block_name(self):
                return "button"

        class InputAccordion(gr.Checkbox):
            """A hidden checkbox (the input) plus an accordion that opens with it (A1111 ui_components.py:88)."""

            webui_do_not_create_gradio_pyi_thank_you = True
            global_index = 0

            def __init__(self, value, **kwargs):  # A1111: value has no default
                self.accordion_id = kwargs.get('elem_id')
                if self.accordion_id is None:
                    self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
                    InputAccordion.global_index += 1
                super().__init__(value=value, **{**kwargs, "elem_id": f"{self.accordion_id}-checkbox",
                                                 "visible": False})
                self.accordion = gr.Accordion(**{**kwargs, "elem_id": self.accordion_id,
                                                 "label": kwargs.get('label', 'Accordion'),
                                                 "elem_classes": ['input-accordion'], "open": value})

            def extra(self):
                return gr.Column(elem_id=self.accordion_id + '-extra', elem_classes='input-accordion-extra',
                                 min_width=0)

            def __enter__(self):
                self.accordion.__enter__()
                return self

            def __exit__(self, exc_type, exc_val, exc_tb):
                self.accordion.__exit__(exc_type, exc_val, exc_tb)

            def get_block_name(self):
                return "checkbox"

        return {"ToolButton": ToolButton, "InputAccordion": InputAccordion}

    def __getattr__(name):
        if name not in ("ToolButton", "InputAccordion"):
            raise AttributeError(name)
        import gradio as gr

        if id(gr) not in cache:
            cache[id(gr)] = build(gr)
        return cache[id(gr)][name]

    module.__getattr__ = __getattr__
    return module


def _apply_forge_gradio_patches(gr) -> None:
    """What Forge's modules/gradio_extensions.py does to gradio 4 at start-up: component subclasses flagged
    ``webui_do_not_create_gradio_pyi_thank_you`` get no generated .pyi file (gradio would parse our source)."""
    meta = gr.component_meta
    if getattr(meta.create_or_modify_pyi, "skips_flagged_classes", False):
        return
    original = meta.create_or_modify_pyi

    def create_or_modify_pyi(component_class, class_name, events):
        if not hasattr(component_class, "webui_do_not_create_gradio_pyi_thank_you"):
            original(component_class, class_name, events)

    create_or_modify_pyi.skips_flagged_classes = True
    meta.create_or_modify_pyi = create_or_modify_pyi
    meta.updateable = lambda function: function


def ui_common_module(ui_components: types.ModuleType) -> types.ModuleType:
    def create_refresh_button(refresh_component, refresh_method, refreshed_args, elem_id):
        import gradio as gr

        refresh_components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

        def refresh():
            refresh_method()
            args = refreshed_args() if callable(refreshed_args) else refreshed_args
            for key, value in args.items():
                for component in refresh_components:
                    setattr(component, key, value)
            return gr.update(**(args or {}))

        button = ui_components.ToolButton(value="\U0001f504", elem_id=elem_id)
        button.click(fn=refresh, inputs=[], outputs=refresh_components)
        button.refresh = refresh  # for tests: what the click runs
        return button

    return new_module("modules.ui_common", create_refresh_button=create_refresh_button, refresh_symbol="\U0001f504")


def fake_gradio_module(version: str = "3.41.2") -> types.ModuleType:
    """Enough of ``gradio`` to execute the script file and register settings (no UI is built with it)."""

    class Component:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    names = ("Textbox", "Radio", "Checkbox", "Slider", "Number", "Dropdown", "Button", "Row", "Column", "Group",
             "Accordion", "HTML", "Markdown", "Blocks")
    module = types.ModuleType("gradio")
    module.__version__ = version
    for name in names:
        setattr(module, name, type(name, (Component,), {}))
    module.update = lambda **kwargs: {"__type__": "update", **kwargs}
    return module


# --- assembling the module trees --------------------------------------------------------------------------------------
HOST_ROOT_MODULES = ("modules", "backend", "ldm_patched", "modules_forge")

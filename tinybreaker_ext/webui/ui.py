"""The TinyBreaker accordion. One code path for gradio 3.41 (A1111, reForge) and 4.40 (Forge): only gr.update,
``elem_id``, no ``.style``, dropdowns with ``allow_custom_value``. Each control's value is the API default."""

from __future__ import annotations

import html
from typing import Callable

from .. import params
from ..params import FIELD_BY_NAME
from . import locations

# The accordion's rows (any layout: build_ui returns the controls in FIELDS order); the memory hint follows t5_mode.
_ROWS = (("checkpoint", "t5_file", "style"), ("base_sampler", "base_scheduler", "base_steps", "base_cfg"),
         ("refine_sampler", "refine_strength", "refine_steps", "refine_cfg"),
         ("detail_level", "cfg_shift", "image_shift", "t5_mode"),
         ("upscale", "upscale_by", "upscale_noise", "upscale_mode", "upscale_model"))
_RADIOS = ("refine_sampler", "upscale_mode")
_FOUND_ON_DISK = ("checkpoint", "t5_file")  # files: empty = the first one found; a refresh button re-reads them


def build_ui(elem_id: Callable[[str], str], choices: Callable[[str], list[str]], size_targets=None):
    """Returns (controls in FIELDS order, infotext paste fields)."""
    import gradio as gr
    from modules.ui_components import InputAccordion

    controls: dict[str, object] = {}
    with InputAccordion(FIELD_BY_NAME["enabled"].default, label="TinyBreaker", elem_id=elem_id("enable")) as enabled:
        controls["enabled"] = enabled
        for row in _ROWS:
            with gr.Row():
                for name in row:
                    controls[name] = _control(gr, name, elem_id, choices)
                    if name == "t5_mode":
                        _memory_hint(gr, elem_id, controls)
        _size_presets(gr, elem_id, size_targets)
        ordered = [controls[name] for name in params.FIELD_NAMES]
        _save_style(gr, elem_id, ordered, controls["style"], choices)

    paste_fields = [(controls["enabled"], lambda d: FIELD_BY_NAME["enabled"].infotext_key in d)]
    paste_fields += [(controls[name], params.field_label_callable(name))
                     for name in params.FIELD_NAMES if name != "enabled"]
    return ordered, paste_fields


def _control(gr, name: str, elem_id, choices):
    spec = FIELD_BY_NAME[name]
    if name in _FOUND_ON_DISK:
        from modules.ui_common import create_refresh_button

        control = gr.Dropdown(label=spec.label, choices=[""] + choices(name), value="", allow_custom_value=True,
                              elem_id=elem_id(name))
        create_refresh_button(control, lambda: None, lambda: {"choices": [""] + choices(name)},
                              elem_id(name + "_refresh"))
        return control
    if name == "image_shift":
        return gr.Number(label=spec.label, value=0, precision=0, minimum=0, elem_id=elem_id(name))
    if spec.kind is bool:
        return gr.Checkbox(label=spec.label, value=spec.default, elem_id=elem_id(name))
    if spec.minimum is not None:
        return gr.Slider(label=spec.label, minimum=spec.minimum, maximum=spec.maximum, step=spec.step,
                         value=spec.default, elem_id=elem_id(name))
    if name in _RADIOS:
        return gr.Radio(label=spec.label, choices=list(spec.choices), value=spec.default, elem_id=elem_id(name))
    listed = list(spec.choices) if spec.choices else choices(name) or [spec.default]
    return gr.Dropdown(label=spec.label, choices=listed, value=spec.default, allow_custom_value=True,
                       elem_id=elem_id(name))


def _memory_hint(gr, elem_id, controls) -> None:
    """One line next to T5 placement: will the chosen files fit (``run_plan.hint``), updated when the files, the
    placement or the switch change. Empty until then: building the accordion reads no file."""
    hint = gr.HTML(value="", elem_id=elem_id("memory_hint"))
    inputs = [controls["checkpoint"], controls["t5_file"], controls["t5_mode"]]
    for control in inputs + [controls["enabled"]]:
        control.change(fn=memory_hint_html, inputs=inputs, outputs=[hint], show_progress=False)


def memory_hint_html(checkpoint: str, t5_file: str, t5_mode: str) -> str:
    from .run_plan import hint

    return f"<span class='tinybreaker-memory-hint'>{html.escape(hint(checkpoint, t5_file, t5_mode))}</span>"


def _save_style(gr, elem_id, ordered, style_control, choices) -> None:
    """"Save as style": the current settings become a style in the user's styles file, listed at once."""
    with gr.Row():
        name = gr.Textbox(label="New style name", placeholder="MY_STYLE", max_lines=1, elem_id=elem_id("style_name"))
        save = gr.Button(value="Save as style", elem_id=elem_id("style_save"))
        status = gr.HTML(value="", elem_id=elem_id("style_status"))

    def save_style(style_name, *values):
        from ..errors import TinyBreakerError

        try:
            path = locations.save_style(style_name, params.from_script_args(list(values)))
        except TinyBreakerError as error:
            return gr.update(), f"<span class='tinybreaker-error'>{html.escape(str(error))}</span>"
        return (gr.update(choices=choices("style"), value=style_name.strip()),
                f"Saved in {html.escape(path)}")

    save.click(fn=save_style, inputs=[name, *ordered], outputs=[style_control, status], show_progress=False)


def _size_presets(gr, elem_id, size_targets) -> None:
    """Aspect presets that set txt2img's own width and height (they are not generation parameters)."""
    from ..prompt.sizes import image_size, snap_to_step

    with gr.Row():
        aspect = gr.Dropdown(label="Size preset", choices=list(params.SIZE_PRESETS[1:]), value="1:1",
                             elem_id=elem_id("size_aspect"))
        orientation = gr.Radio(label="Orientation", choices=list(params.ORIENTATIONS), value="landscape",
                               elem_id=elem_id("size_orientation"))
        scale = gr.Radio(label="Scale", choices=list(params.SIZE_SCALES), value="large", elem_id=elem_id("size_scale"))
        apply = gr.Button(value="Set size", elem_id=elem_id("size_apply"))
    if size_targets is None:
        return
    width, height = size_targets
    step = getattr(width, "step", None) or 8
    locations.remember_size_step(step)

    def set_size(aspect_text, orientation_text, scale_text):
        new_width, new_height = snap_to_step(*image_size(aspect_text, orientation_text, scale_text), step)
        return gr.update(value=new_width), gr.update(value=new_height)

    apply.click(fn=set_size, inputs=[aspect, orientation, scale], outputs=[width, height], show_progress=False)

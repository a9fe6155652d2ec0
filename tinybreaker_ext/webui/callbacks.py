"""What TinyBreaker registers with the host, once from the script file (and again after a UI reload)."""

from __future__ import annotations

import logging
import os

from .. import params
from ..infotext import TB_BASE_PARAMETERS, TB_REFINER_PARAMETERS, TB_STYLE, parse_stage_parameters
from . import locations

log = logging.getLogger(__name__)
XYZ_AXIS_PREFIX = "[TinyBreaker] "


def register_callbacks() -> None:
    from modules import script_callbacks

    from .api import register_routes

    script_callbacks.on_ui_settings(register_settings)
    script_callbacks.on_app_started(lambda _demo, app: register_routes(app))
    script_callbacks.on_before_ui(add_xyz_axes)
    script_callbacks.on_script_unloaded(release_models)
    script_callbacks.on_infotext_pasted(translate_pasted)


def add_xyz_axes() -> None:
    """An axis writes an override on the grid's copy of ``p``; ``script_logic.process`` validates it like any input."""
    from modules import scripts

    xyz = next((data.module for data in scripts.scripts_data if hasattr(data, "module")
                and data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid")), None)
    if xyz is None:
        log.info("TinyBreaker: XYZ plot script not found; no axes added")
        return
    existing = {option.label for option in xyz.axis_options}
    for spec in [spec for spec in params.FIELDS if spec.xyz]:
        label = XYZ_AXIS_PREFIX + spec.label.replace(" (0 = style)", "")
        if label not in existing:
            xyz.axis_options.append(xyz.AxisOption(label, spec.kind, _xyz_override(spec.name),
                                                   choices=_xyz_choices(spec)))


def _xyz_override(field_name: str):
    def apply(p, value, _values):
        from .script_logic import XYZ_OVERRIDES_ATTRIBUTE

        overrides = dict(getattr(p, XYZ_OVERRIDES_ATTRIBUTE, None) or {})
        overrides[field_name] = value
        overrides.setdefault("enabled", True)  # an axis over a TinyBreaker value only makes sense with it on
        setattr(p, XYZ_OVERRIDES_ATTRIBUTE, overrides)

    return apply


def _xyz_choices(spec: params.FieldSpec):
    """Styles and upscalers are read when the grid asks (they change while the WebUI runs); other fields are fixed."""
    from .api import control_choices

    if spec.name in ("style", "upscale_model"):
        return lambda: control_choices(spec.name)
    if spec.choices:
        return lambda: list(spec.choices)
    return None


def translate_pasted(infotext: str, fields: dict) -> None:
    """``on_infotext_pasted``: an image made by ComfyUI-TinyBreaker has only the TB fields (docs/design.md
    "Infotext"); ours are derived from them. The host's own Seed and Size fields restore seed and size."""
    our_key = {spec.name: spec.infotext_key for spec in params.FIELDS}
    if our_key["enabled"] in fields or not any(key in fields for key in (TB_STYLE, TB_BASE_PARAMETERS)):
        return
    fields[our_key["enabled"]] = "on"
    if TB_STYLE in fields:
        fields[our_key["style"]] = fields[TB_STYLE]
    base, _ = parse_stage_parameters(str(fields.get(TB_BASE_PARAMETERS, "")))
    for name in ("sampler", "scheduler", "steps", "cfg"):
        if name in base:
            fields[our_key["base_" + name]] = str(base[name])
    refiner, _ = parse_stage_parameters(str(fields.get(TB_REFINER_PARAMETERS, "")))
    if "cfg" in refiner:
        fields[our_key["refine_cfg"]] = str(refiner["cfg"])
    model = str(fields.get("Model", ""))
    if model.lower().startswith("tinybreaker"):
        # The ComfyUI version's Model is the TinyBreaker checkpoint, not an SD checkpoint the host could switch to.
        fields[our_key["checkpoint"]] = model if os.path.splitext(model)[1] else model + ".safetensors"
        fields.pop("Model", None)
        fields.pop("Model hash", None)


def release_models() -> None:
    from ..pipeline import release_pipelines

    release_pipelines()


def register_settings() -> None:
    import gradio as gr
    from modules import shared

    for key, default, label, component, component_args in (
            (locations.SETTING_EXTRA_DIRS, "", "Extra model folders (separate with ';'), e.g. an existing ComfyUI "
             "models folder", gr.Textbox, None),
            (locations.SETTING_STYLE_DIRS, "", "Extra style folders (';'): *.ini style files, e.g. "
             "ComfyUI-TinyBreaker's styles folder", gr.Textbox, None),
            (locations.SETTING_T5_MODE, "auto", "Default T5 placement", gr.Radio, {"choices": list(params.T5_MODES)}),
            (locations.SETTING_DTYPE, "auto", "Compute dtype of PixArt and the transcoder", gr.Radio,
             {"choices": ["auto", "bf16", "fp16", "fp32"]}),
            (locations.SETTING_COMPILE, False, "torch.compile PixArt (faster steps on a GPU with Triton; the first "
             "image of each size compiles, minutes; skipped where unsupported)", gr.Checkbox, None)):
        shared.opts.add_option(key, shared.OptionInfo(default, label, component, component_args,
                                                      section=("tinybreaker", "TinyBreaker")))

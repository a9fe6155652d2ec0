"""Callback registration, called once from the script file (and again after a UI reload), and the TinyBreaker
section in Settings."""

from __future__ import annotations

import logging

from .. import params
from . import locations

log = logging.getLogger(__name__)


def register_callbacks() -> None:
    from modules import script_callbacks

    from .api import register_routes
    from .infotext import translate_pasted

    script_callbacks.on_ui_settings(register_settings)
    script_callbacks.on_app_started(lambda _demo, app: register_routes(app))
    script_callbacks.on_before_ui(add_xyz_axes)
    script_callbacks.on_script_unloaded(release_models)
    script_callbacks.on_infotext_pasted(translate_pasted)


def add_xyz_axes() -> None:
    from .xyz import add_axes

    if not add_axes():
        log.info("TinyBreaker: XYZ plot script not found; no axes added")


def release_models() -> None:
    from ..pipeline import release_pipelines

    release_pipelines()


def register_settings() -> None:
    import gradio as gr
    from modules import shared

    section = ("tinybreaker", "TinyBreaker")
    options = {
        locations.SETTING_EXTRA_DIRS: shared.OptionInfo(
            "", "Extra model folders (separate with ';'), e.g. an existing ComfyUI models folder",
            gr.Textbox, section=section),
        locations.SETTING_STYLE_DIRS: shared.OptionInfo(
            "", "Extra style folders (';'): *.ini style files, e.g. ComfyUI-TinyBreaker's styles folder",
            gr.Textbox, section=section),
        locations.SETTING_T5_MODE: shared.OptionInfo(
            "auto", "Default T5 placement", gr.Radio, {"choices": list(params.T5_MODES)}, section=section),
        locations.SETTING_DTYPE: shared.OptionInfo(
            "auto", "Compute dtype of PixArt and the transcoder", gr.Radio,
            {"choices": ["auto", "bf16", "fp16", "fp32"]}, section=section),
        locations.SETTING_COMPILE: shared.OptionInfo(
            False, "torch.compile PixArt (faster steps on a GPU with Triton; the first image of each size compiles, "
            "minutes; skipped where unsupported)", gr.Checkbox, section=section),
    }
    for key, info in options.items():
        shared.opts.add_option(key, info)

"""The TinyBreaker section in Settings."""

from __future__ import annotations

from .. import params
from . import locations


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

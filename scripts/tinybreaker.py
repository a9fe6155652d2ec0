"""TinyBreaker for WebUI — the thin script: UI and hooks delegate to ``tinybreaker_ext.webui``."""

import gradio as gr  # noqa: F401  (the host has it; imported here so a missing gradio fails loudly at load)

from modules import scripts

from tinybreaker_ext.webui import callbacks, script_logic, ui
from tinybreaker_ext.webui.api import control_choices


class TinyBreakerScript(scripts.Script):
    section = "accordions"
    create_group = False
    sorting_priority = 12  # Forge/reForge: next to Hires fix and Refiner

    def __init__(self):
        self.size_targets = {}

    def title(self):
        return "TinyBreaker"

    def show(self, is_img2img):
        return False if is_img2img else scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        if kwargs.get("elem_id") in ("txt2img_width", "txt2img_height"):
            self.size_targets[kwargs["elem_id"]] = component

    def ui(self, is_img2img):
        targets = None
        if len(self.size_targets) == 2:
            targets = (self.size_targets["txt2img_width"], self.size_targets["txt2img_height"])
        controls, self.infotext_fields = ui.build_ui(self.elem_id, control_choices, targets)
        self.paste_field_names = []
        return controls

    def before_process(self, p, *args):
        script_logic.before_process(p, *args)

    def process(self, p, *args):
        script_logic.process(p, *args)

    def process_batch(self, p, *args, **kwargs):
        script_logic.process_batch(p)

    def postprocess_image(self, p, pp, *args):
        script_logic.postprocess_image(p)

    def postprocess(self, p, processed, *args):
        script_logic.postprocess(p)


callbacks.register_callbacks()

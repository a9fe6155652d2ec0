"""ComfyUI-TinyBreaker's own infotext fields (``TB style``, ``TB base parameters``, ``TB refiner parameters``): written
on every image, and understood when pasted (PNG Info → Send to txt2img, or the API's ``infotext`` field)."""

from __future__ import annotations

import os

from ..infotext import (TB_BASE_PARAMETERS, TB_REFINER_PARAMETERS, TB_STYLE, parse_stage_parameters, tb_fields,
                        tinybreaker_fields)
from ..plan import GenerationPlan

ENABLED_KEY = "TinyBreaker"


def tb_generation_params(plan: GenerationPlan, seed: int) -> dict:
    """Values for ``p.extra_generation_params``: our fields and ComfyUI-TinyBreaker's for the image with base seed
    ``seed`` (script_logic.postprocess_image updates them per image)."""
    return {**tinybreaker_fields(plan), **tb_fields(plan, int(seed))}


def translate_pasted(infotext: str, fields: dict) -> None:
    """``on_infotext_pasted`` callback: an image made by ComfyUI-TinyBreaker has TB fields but none of ours;
    map them so the accordion (and API script args) restore style, base sampler/schedule/steps/CFG and refine
    CFG. The host's own Seed and Size fields restore seed and size; the prompt keeps its inline arguments."""
    if ENABLED_KEY in fields or not any(key in fields for key in (TB_STYLE, TB_BASE_PARAMETERS)):
        return
    fields[ENABLED_KEY] = "on"
    if TB_STYLE in fields:
        fields["TinyBreaker style"] = fields[TB_STYLE]
    base, _ = parse_stage_parameters(str(fields.get(TB_BASE_PARAMETERS, "")))
    for stage_key, our_key in (("sampler", "TinyBreaker base sampler"), ("scheduler", "TinyBreaker base schedule"),
                               ("steps", "TinyBreaker base steps"), ("cfg", "TinyBreaker base CFG")):
        if stage_key in base:
            fields[our_key] = str(base[stage_key])
    refiner, _ = parse_stage_parameters(str(fields.get(TB_REFINER_PARAMETERS, "")))
    if "cfg" in refiner:
        fields["TinyBreaker refine CFG"] = str(refiner["cfg"])
    model = str(fields.get("Model", ""))
    if model.lower().startswith("tinybreaker"):
        # The ComfyUI version's Model is the TinyBreaker checkpoint, not an SD checkpoint the host could switch to.
        fields["TinyBreaker model"] = model if os.path.splitext(model)[1] else model + ".safetensors"
        fields.pop("Model", None)
        fields.pop("Model hash", None)

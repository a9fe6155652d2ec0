"""The WebUI's own upscalers (``modules.shared.sd_upscalers``: ESRGAN, R-ESRGAN, SwinIR, DAT, Lanczos … — the list
Hires fix and Extras offer) as the Tiny Upscaler's upscale model. Every host keeps the same list of
``UpscalerData`` (``name``, ``data_path``, ``scaler``) whose ``scaler.upscale(image, scale, data_path)`` enlarges a
PIL image; a host without the list offers none. Called directly, not through ``images.resize_image``, which falls
back to another upscaler when a name is unknown: a wrong name here is the caller's 422."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError
from ..params import NO_UPSCALE_MODEL

FIELD = "upscale_model"


def _host_upscalers() -> list:
    from modules import shared

    return [upscaler for upscaler in (getattr(shared, "sd_upscalers", None) or [])
            if str(getattr(upscaler, "name", "")).strip().lower() not in ("", NO_UPSCALE_MODEL)]


def upscaler_names() -> list[str]:
    """The host's upscalers, in its order, without its "None" (our 'none' means the same)."""
    return [str(upscaler.name) for upscaler in _host_upscalers()]


def find_upscaler(name: str):
    """The host's ``UpscalerData`` called ``name`` (exactly, else ignoring case), or a ParameterError that lists
    the names this WebUI has."""
    upscalers = _host_upscalers()
    for matches in (lambda upscaler: upscaler.name == name,
                    lambda upscaler: str(upscaler.name).lower() == name.lower()):
        found = [upscaler for upscaler in upscalers if matches(upscaler)]
        if found:
            return found[0]
    names = ", ".join(repr(str(upscaler.name)) for upscaler in upscalers) or "none installed"
    raise ParameterError(FIELD, f"this WebUI has no upscaler named {name!r}; its upscalers: {names}, or "
                                f"{NO_UPSCALE_MODEL!r}")


def check_plan_upscaler(generation) -> None:
    """A plan that upscales with an upscale model must name one of the host's: else the request's 422, before
    any work (txt2img and the plan route alike)."""
    if generation.upscale and generation.upscale_model:
        find_upscaler(generation.upscale_model)


def pre_upscale_function(upscaler, scale_by: float):
    """Images [B, 3, H, W] in [0, 1] → the host upscaler's images (about ``scale_by`` times larger; the Tiny
    Upscaler resizes them to its exact size)."""
    from PIL import Image

    def run(images: torch.Tensor) -> torch.Tensor:
        arrays = (images.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        enlarged = [upscaler.scaler.upscale(Image.fromarray(array), scale_by, upscaler.data_path)
                    for array in arrays]
        return torch.stack([torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
                            for image in enlarged]).permute(0, 3, 1, 2)

    return run

"""Image sizes from an aspect ratio, an orientation and a named scale (docs/numerics.md "Image sizes"): multiples of
16 (8 latent pixels × PixArt's 2×2 patches) of about the same area for every aspect ratio."""

from __future__ import annotations

import math
import re

from ..errors import ParameterError

SCALES: dict[str, float] = {"small": 1.0, "medium": 1.0, "large": 1.22}
DEFAULT_SCALE = "large"

MAX_SIDE_RATIO = 6  # neither side may exceed 6× the other
SIZE_MULTIPLE = 16
TRAINED_SIDE = 1024  # PixArt-Sigma's resolution: every aspect ratio gets about this side squared

_RATIO = re.compile(r"(\d+):(\d+)", re.ASCII)


def parse_aspect(text: str | tuple[int, int] | list) -> tuple[int, int]:
    """`"W:H"` (a trailing label such as `"16:9 (wide)"` is ignored) or a pair of ints, as given, not clamped."""
    if isinstance(text, (tuple, list)):
        if len(text) == 2 and all(isinstance(side, int) and not isinstance(side, bool) for side in text):
            width, height = text
        else:
            raise ParameterError("aspect", f"expected two integers, got {text!r}")
    else:
        first_word = str(text).strip().split(maxsplit=1)
        match = _RATIO.fullmatch(first_word[0]) if first_word else None
        if not match:
            raise ParameterError("aspect", f"expected W:H with whole numbers (like 3:2), got {str(text)!r}")
        width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        raise ParameterError("aspect", f"both sides must be at least 1, got {width}:{height}")
    return width, height


def clamp_aspect(width: int, height: int) -> tuple[int, int]:
    """Limits each side to six times the other, as the reference does (`1:9` becomes `1:6`)."""
    width = min(width, MAX_SIDE_RATIO * height)
    height = min(height, MAX_SIDE_RATIO * width)
    return width, height


def normalize_aspect(text: str | tuple[int, int], orientation: str | None = "") -> tuple[int, int]:
    """Parsed, clamped and oriented ratio ("" or None: as given). Unlike the reference, `2:1` (any `W:1`) stays."""
    width, height = clamp_aspect(*parse_aspect(text))
    orientation = (orientation or "").strip().lower()
    if (orientation == "portrait" and width > height) or (orientation == "landscape" and width < height):
        return height, width
    return width, height


def scale_factor(scale: str | float | None) -> float:
    """A named scale (small, medium, large) or a number; None means the default (large)."""
    name = DEFAULT_SCALE if scale is None else str(scale).strip().lower()
    if name in SCALES:
        return SCALES[name]
    try:
        factor = float(name)
    except ValueError:
        raise ParameterError("scale", f"expected one of {', '.join(SCALES)} or a number, got {scale!r}") from None
    if not (math.isfinite(factor) and factor > 0):
        raise ParameterError("scale", f"must be a positive number, got {scale!r}")
    return factor


def image_size(aspect: str | tuple[int, int] = "1:1", orientation: str | None = "",
               scale: str | float | None = DEFAULT_SCALE) -> tuple[int, int]:
    """(width, height) in pixels, multiples of 16, per docs/numerics.md "Image sizes" (rounding ties to even)."""
    ratio_w, ratio_h = normalize_aspect(aspect, orientation)
    factor = scale_factor(scale)
    width0 = math.sqrt(TRAINED_SIDE * TRAINED_SIDE * ratio_w / ratio_h)
    height0 = width0 * ratio_h / ratio_w
    width = int(round(width0 * factor / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    height = int(round(height0 * factor / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    return max(width, SIZE_MULTIPLE), max(height, SIZE_MULTIPLE)


def snap_to_pixart(width: int, height: int) -> tuple[int, int, str | None]:
    """A size PixArt can take (nearest multiples of 16), with a warning when its area is far from the trained one
    (PixArt distorts away from it: more than twice or less than half)."""
    snapped_w, snapped_h = snap_to_step(width, height, SIZE_MULTIPLE)
    ratio = snapped_w * snapped_h / (TRAINED_SIDE * TRAINED_SIDE)
    warning = None
    if ratio > 2.0 or ratio < 0.5:
        warning = (f"{snapped_w}x{snapped_h} is {ratio:.2f}x the area PixArt was trained on "
                   f"({TRAINED_SIDE}x{TRAINED_SIDE}); expect distorted composition")
    return snapped_w, snapped_h, warning


def snap_to_step(width: int, height: int, step: int) -> tuple[int, int]:
    """Each side to the nearest multiple of a WebUI's size step (Forge Neo's sliders move by 64), at least one step."""
    step = max(int(step), 1)
    return max(step, int(round(width / step)) * step), max(step, int(round(height / step)) * step)

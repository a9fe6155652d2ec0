"""Limits every front end shares; what they are and why: docs/design.md "Limits". `plan.make_plan` applies them; the
encoders (T5, and the command line's embedded CLIP) keep the first `MAX_PROMPT_TOKENS` tokens."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import ParameterError

MAX_PROMPT_TOKENS = 512  # per text encoder input, EOS included
MAX_IMAGE_AREA = 2048 * 2048  # pixels of the base, refine and decode stages
MAX_UPSCALED_AREA = 8192 * 8192  # pixels of the Tiny Upscaler's output

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class AreaLimits:
    """The largest image each stage may work on, in pixels (the command line can raise or lower them)."""
    image: int = MAX_IMAGE_AREA
    upscaled: int = MAX_UPSCALED_AREA


class LimitError(ParameterError):
    """A request over one of the limits; ``limit`` names which (``"image"`` or ``"upscaled"``)."""

    def __init__(self, field: str, problem: str, limit: str):
        self.limit = limit
        super().__init__(field, problem)


def check_image_area(width: int, height: int, upscaled_size: tuple[int, int] | None, limits: AreaLimits) -> None:
    """Raises LimitError for an image or a Tiny Upscaler canvas over the limits (docs/design.md "Limits")."""
    if width * height > limits.image:
        raise LimitError("size", f"{width}x{height} is {_megapixels(width * height)} megapixels; the base, refine "
                                 f"and decode stages take at most {_megapixels(limits.image)} "
                                 f"({_square(limits.image)}): use a smaller size, and the Tiny Upscaler for a bigger "
                                 "picture", "image")
    if upscaled_size is not None and upscaled_size[0] * upscaled_size[1] > limits.upscaled:
        out_width, out_height = upscaled_size
        raise LimitError("upscale_by", f"upscaling {width}x{height} gives {out_width}x{out_height}, "
                                       f"{_megapixels(out_width * out_height)} megapixels; the Tiny Upscaler makes "
                                       f"at most {_megapixels(limits.upscaled)} ({_square(limits.upscaled)}): use "
                                       "a smaller factor or size", "upscaled")


def prompt_token_warnings(texts: Iterable[tuple[str, str]], count_tokens: TokenCounter, encoder: str) -> list[str]:
    """One warning per (name, text) whose ``count_tokens`` (EOS included) passes `MAX_PROMPT_TOKENS`."""
    warnings = []
    for name, text in texts:
        count = count_tokens(text)
        if count > MAX_PROMPT_TOKENS:
            warnings.append(f"the {name} is {count} {encoder} tokens; only the first {MAX_PROMPT_TOKENS} are used "
                            f"(the rest is cut, as diffusers' max_sequence_length does)")
    return warnings


def t5_token_counter(tokenizer_search: dict) -> TokenCounter | None:
    """``count_tokens`` of the T5 tokenizer ``find_t5_tokenizer(**tokenizer_search)`` finds without downloading; None
    when there is none yet (the plan then has no length warning, and the encoder still cuts)."""
    from .errors import TinyBreakerError
    from .models.t5_tokenizer import find_t5_tokenizer

    try:
        folder = find_t5_tokenizer(**{**tokenizer_search, "allow_download": False})
        return _t5_tokenizer(folder, _modified(folder)).count_tokens
    except (TinyBreakerError, OSError):
        return None


@functools.lru_cache(maxsize=4)
def _t5_tokenizer(folder: str, modified: tuple):
    from .models.t5_tokenizer import T5PromptTokenizer

    return T5PromptTokenizer.from_dir(folder)


def _modified(folder: str) -> tuple:
    """What changes when the tokenizer files change (the cache key next to the folder)."""
    return tuple(os.stat(entry.path).st_mtime_ns for entry in sorted(os.scandir(folder), key=lambda e: e.name)
                 if entry.is_file())


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}"


def _square(pixels: int) -> str:
    side = math.isqrt(pixels)
    return f"{side}x{side}" if side * side == pixels else f"{pixels} pixels"

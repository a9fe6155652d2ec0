"""The denoising parameters of one stage (base, refiner, upscaler), as TinyBreaker's styles and prompts set them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

STAGES = ("base", "refiner", "upscaler")


@dataclass
class StageParams:
    """One stage's knobs, with the reference's fall-back defaults (spec §5.1)."""

    prompt: str = ""
    negative: str = ""
    sampler: str = "euler"
    scheduler: str = "normal"
    steps: int = 12
    steps_start: int = 0
    steps_end: int = 10000
    steps_nfactor: int = 0
    cfg: float = 3.5
    noise_seed: int = 1
    extra_noise: float = 0.0  # upscaler only

    def copy(self, **changes) -> "StageParams":
        return replace(self, **changes)


@dataclass
class ImageParams:
    aspect_ratio: str = "1:1"
    orientation: str = ""  # "", "landscape" or "portrait"
    scale: float = 1.22  # small 1.0, medium 1.0, large 1.22
    batch_size: int = 1
    enable_upscaler: bool = False
    upscale_by: float = 3.0


@dataclass
class GenerationSettings:
    """Everything a style and the inline parameters decide for one generation."""

    style: str = ""
    prompt: str = ""  # the user's full text, inline parameters included (what infotext stores)
    base: StageParams = field(default_factory=StageParams)
    refiner: StageParams = field(default_factory=StageParams)
    upscaler: StageParams = field(default_factory=StageParams)
    image: ImageParams = field(default_factory=ImageParams)

    def stage(self, name: str) -> StageParams:
        if name not in STAGES:
            raise KeyError(name)
        return getattr(self, name)

"""The denoising parameters of one stage (base, refiner, upscaler), as TinyBreaker's styles and prompts set them."""

from __future__ import annotations

from dataclasses import dataclass, replace

STAGES = ("base", "refiner", "upscaler")


@dataclass
class StageParams:
    """One stage's knobs, with the reference's fall-back defaults (docs/numerics.md "Styles")."""

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

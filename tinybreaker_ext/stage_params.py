"""The denoising parameters of one stage (base, refiner, upscaler), as TinyBreaker's styles and prompts set them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .sampling.schedules import compute_sigmas

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

    def sigmas(self, model_sigmas: torch.Tensor) -> torch.Tensor:
        """The sigmas this stage's window runs on a model's sigma table; empty = the stage is skipped."""
        return compute_sigmas(model_sigmas, sampler=self.sampler, scheduler=self.scheduler, steps=self.steps,
                              steps_start=self.steps_start, steps_end=self.steps_end, steps_nfactor=self.steps_nfactor)

"""The WebUI's loaded SD1 model as ``denoiser(x, sigma[B]) -> x0`` (CFG included) for our refine and the Tiny
Upscaler (docs/hosts.md "The host's CFG denoiser")."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import Cancelled

TILE_SAMPLER = "Euler"


def host_conditioning(p, prompt: str, negative: str, steps: int, width: int, height: int):
    """(cond, uncond) for one image with the host's text encoder, in the form its CFG denoiser takes."""
    from modules import prompt_parser

    texts = prompt_parser.SdConditioning([prompt], width=width, height=height)
    negatives = prompt_parser.SdConditioning([negative], is_negative_prompt=True, width=width, height=height)
    cond = prompt_parser.get_multicond_learned_conditioning(p.sd_model, texts, steps)
    uncond = prompt_parser.get_learned_conditioning(p.sd_model, negatives, steps)
    return cond, uncond


class HostDenoiser:
    """``denoiser(x, sigma[B])`` inside ``with denoiser.active(x):``. A call at ``sigmas[i]`` counts as sampling
    step i for the host (prompt schedules, "skip early CFG"): each sweep of tiles is one sampler step."""

    def __init__(self, p, cond, uncond, cfg_scale: float, sigmas: torch.Tensor):
        from modules import sd_samplers, sd_samplers_common

        self.p = p
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = float(cfg_scale)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
        self.sampler = sd_samplers.create_sampler(TILE_SAMPLER, p.sd_model)
        self.cfg_denoiser = self.sampler.model_wrap_cfg
        self._interrupted = sd_samplers_common.InterruptedException
        self._image_conds: dict[tuple, object] = {}

    @contextlib.contextmanager
    def active(self, example: torch.Tensor) -> Iterator["HostDenoiser"]:
        """The host state one ``sample_img2img`` call sets up, for latents shaped like ``example``."""
        p, sampler = self.p, self.sampler
        saved = {name: getattr(p, name) for name in ("is_hr_pass", "refiner_checkpoint_info") if hasattr(p, name)}
        if "is_hr_pass" in saved:
            p.is_hr_pass = False  # Forge/reForge would take the Hires CFG and schedule
        if "refiner_checkpoint_info" in saved:
            p.refiner_checkpoint_info = None  # no checkpoint switch in the middle of a sweep
        prepare, cleanup, unet = _forge_sampling_hooks(sampler, p)
        if prepare is not None:
            prepare(unet, x=example)
        try:
            _sigmas_to(sampler, example.device)
            sampler.initialize(p)
            self.s_min_uncond = float(getattr(sampler, "s_min_uncond", None) or 0.0)
            steps = max(len(self.sigmas) - 1, 1)
            self.cfg_denoiser.init_latent = example
            self.cfg_denoiser.steps = steps
            self.cfg_denoiser.total_steps = steps
            sampler.last_latent = example
            sampler.sampler_extra_args = {"cond": self.cond, "image_cond": self._image_cond(example),
                                          "uncond": self.uncond, "cond_scale": self.cfg_scale,
                                          "s_min_uncond": self.s_min_uncond}
            yield self
        finally:
            if cleanup is not None:
                cleanup(unet)
            for name, value in saved.items():
                setattr(p, name, value)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        self.cfg_denoiser.step = int((self.sigmas - float(sigma.max())).abs().argmin())
        try:
            denoised = self.cfg_denoiser(x, sigma, cond=self.cond, uncond=self.uncond, cond_scale=self.cfg_scale,
                                         s_min_uncond=self.s_min_uncond, image_cond=self._image_cond(x))
        except self._interrupted as error:  # Interrupt/Skip (the host's exception derives from BaseException)
            raise Cancelled("interrupted") from error
        return denoised.to(device=x.device, dtype=x.dtype)

    def _image_cond(self, x: torch.Tensor):
        """``txt2img_image_conditioning`` at the tile's size (zeros for normal SD1; a full mask for inpainting)."""
        key = (tuple(x.shape), str(x.device))
        if key not in self._image_conds:
            self._image_conds[key] = self.p.txt2img_image_conditioning(x, width=x.shape[-1] * 8,
                                                                       height=x.shape[-2] * 8)
        return self._image_conds[key]


def _forge_sampling_hooks(sampler, p):
    """Forge's and reForge's ``sampling_prepare``/``sampling_cleanup`` (imported into their
    ``modules.sd_samplers_kdiffusion``; A1111 has none) and the UNet patcher they take."""
    from modules import sd_samplers_kdiffusion

    prepare = getattr(sd_samplers_kdiffusion, "sampling_prepare", None)
    cleanup = getattr(sd_samplers_kdiffusion, "sampling_cleanup", None)
    if prepare is None:
        return None, None, None
    model = getattr(getattr(sampler, "model_wrap", None), "inner_model", None) or p.sd_model
    return prepare, cleanup, model.forge_objects.unet


def _sigmas_to(sampler, device: torch.device) -> None:
    """reForge's sample_img2img moves the k-diffusion wrapper's sigma tables to the latent's device first; Forge's
    are read-only properties of the model's predictor, A1111's live with the model."""
    wrapper = getattr(sampler, "model_wrap", None)
    for name in ("sigmas", "log_sigmas"):
        table = getattr(wrapper, name, None)
        if isinstance(table, torch.Tensor) and table.device != device:
            with contextlib.suppress(AttributeError):  # Forge's read-only properties
                setattr(wrapper, name, table.to(device))

"""Stand-ins for the host pieces the Tiny Upscaler's host denoiser uses, added on top of a ``fake_hosts`` tree:
``sd_samplers.create_sampler`` returning a k-diffusion-like sampler with a CFG denoiser (``model_wrap_cfg``) that has
the real ``forward`` signature, ``prompt_parser`` conditioning objects, ``sd_samplers_common.InterruptedException``,
``processing.DecodedSamples`` and, on Forge/reForge, ``sd_samplers_kdiffusion.sampling_prepare/cleanup``
(A1111 1.10.1, Forge dfdcbab6, reForge 3b56b268).

The fake UNet is ``x0 = 0.5·x + 0.1·mean(context) + 0.01·σ``, and CFG is ``uncond + (cond − uncond)·scale``, so
tests can predict every output; ``hooks`` stand for what host extensions add inside the CFG denoiser
(cfg_denoiser_callback, Forge model_options).
"""

from __future__ import annotations

import types
import zlib
from collections import namedtuple
from dataclasses import dataclass, field

import torch

from builders.fake_host_processing import FakeSampler, record
from builders.fake_host_ui import new_module

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
CONTEXT_TOKENS, CONTEXT_WIDTH = 77, 8


class InterruptedException(BaseException):
    """modules/sd_samplers_common.py: raised by the CFG denoiser on Interrupt/Skip."""


class DecodedSamples(list):
    already_decoded = True


class SdConditioning(list):
    def __init__(self, prompts, is_negative_prompt=False, width=None, height=None, copy_from=None):
        super().__init__()
        self.extend(prompts)
        self.is_negative_prompt = is_negative_prompt
        self.width = width
        self.height = height


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape = shape
        self.batch = batch


def text_embedding(text: str) -> torch.Tensor:
    """The fake text encoder: a fixed random [77, 8] tensor per text."""
    generator = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
    return torch.randn((CONTEXT_TOKENS, CONTEXT_WIDTH), generator=generator)


def conditioning_functions(env: "SamplingEnv"):
    """``prompt_parser.get_learned_conditioning`` and ``get_multicond_learned_conditioning`` with the env's text
    encoder (the real signatures; prompt schedules are not parsed: one schedule per prompt)."""

    def get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
        record("prompt_parser.get_learned_conditioning", list(prompts), steps,
               getattr(prompts, "is_negative_prompt", None))
        return [[ScheduledPromptConditioning(steps, env.encode_text(text))] for text in prompts]

    def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
        record("prompt_parser.get_multicond_learned_conditioning", list(prompts), steps)
        batch = [[ComposableScheduledPromptConditioning([ScheduledPromptConditioning(steps, env.encode_text(text))])]
                 for text in prompts]
        return MulticondLearnedConditioning((len(prompts),), batch)

    return get_learned_conditioning, get_multicond_learned_conditioning


def reconstruct_cond_batch(c, current_step):
    return torch.stack([schedules[0].cond for schedules in c])


def reconstruct_multicond_batch(c, current_step):
    conds_list = [[(index, composable.weight)] for index, (composable,) in enumerate(c.batch)]
    return conds_list, torch.stack([composable.schedules[0].cond for (composable,) in c.batch])


def fake_unet(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    return 0.5 * x + 0.1 * context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + 0.01 * sigma.view(-1, 1, 1, 1)


@dataclass
class SamplingEnv:
    host: str
    hooks: list = field(default_factory=list)  # callables (x, sigma, denoised) -> denoised, run inside CFG
    calls: list = field(default_factory=list)  # one dict per CFG denoiser call
    unet: object = fake_unet  # (x, sigma[B], context[B, T, W]) -> denoised: the host's model behind its CFG
    encode_text: object = text_embedding  # text -> [T, W]: the host's text encoder


class FakeCFGDenoiser:
    """modules/sd_samplers_cfg_denoiser.py:CFGDenoiser — the attributes a sampler sets and ``forward``."""

    def __init__(self, sampler, env: SamplingEnv):
        self.sampler = sampler
        self.env = env
        self.p = None
        self.step = 0
        self.steps = None
        self.total_steps = None
        self.init_latent = None
        self.mask = None

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        from modules import shared

        if shared.state.interrupted or shared.state.skipped:
            raise InterruptedException
        assert self.total_steps, "total_steps must be set before sampling (apply_refiner divides by it)"
        _conds_list, cond_tensor = reconstruct_multicond_batch(cond, self.step)
        uncond_tensor = reconstruct_cond_batch(uncond, self.step)
        cond_pred = self.env.unet(x, sigma, cond_tensor.to(x))
        uncond_pred = self.env.unet(x, sigma, uncond_tensor.to(x))
        denoised = uncond_pred + (cond_pred - uncond_pred) * cond_scale
        for hook in self.env.hooks:
            denoised = hook(x, sigma, denoised)
        forge_objects = getattr(self.p.sd_model, "forge_objects", None)
        self.env.calls.append({
            "x": x.clone(), "sigma": sigma.clone(), "step": self.step, "steps": self.steps,
            "total_steps": self.total_steps, "cond_scale": cond_scale, "s_min_uncond": s_min_uncond,
            "image_cond_shape": tuple(image_cond.shape), "p": self.p, "is_hr_pass": self.p.is_hr_pass,
            "unet": getattr(forge_objects, "unet", None), "init_latent_shape": tuple(self.init_latent.shape)})
        record("cfg_denoiser.forward", self.step, tuple(x.shape))
        self.step += 1
        return denoised


class FakeKDiffusionSampler(FakeSampler):
    """modules/sd_samplers_kdiffusion.py:KDiffusionSampler — ``model_wrap_cfg``, ``model_wrap``, ``initialize``;
    keeps FakeSampler's ``sample_img2img`` so the refine pass still works."""

    def __init__(self, name, model, env: SamplingEnv):
        super().__init__(name, model)
        self.model_wrap_cfg = FakeCFGDenoiser(self, env)
        self.model_wrap = types.SimpleNamespace(inner_model=model, sigmas=torch.linspace(0.03, 14.6, 10),
                                                log_sigmas=torch.linspace(0.03, 14.6, 10).log())
        self.config = types.SimpleNamespace(name=name, total_steps=lambda steps: steps)
        self.s_min_uncond = None
        self.sampler_extra_args = None
        self.last_latent = None

    def initialize(self, p):
        record("sampler.initialize", self.name)
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.step = 0
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        return {}


def install_host_sampling(tree: dict, host: str) -> SamplingEnv:
    """Adds the modules above to an installed ``fake_hosts`` tree (they leave sys.modules with it)."""
    import sys

    env = SamplingEnv(host)

    def create_sampler(name, model):
        record("create_sampler", name)
        assert name, f"bad sampler name: {name}"
        return FakeKDiffusionSampler(name, model, env)

    tree["modules.sd_samplers"].create_sampler = create_sampler
    get_learned_conditioning, get_multicond_learned_conditioning = conditioning_functions(env)
    tree["modules.processing"].DecodedSamples = DecodedSamples
    tree["modules.processing"].decode_latent_batch = decode_latent_batch
    added = {
        "modules.prompt_parser": new_module(
            "modules.prompt_parser", SdConditioning=SdConditioning, get_learned_conditioning=get_learned_conditioning,
            get_multicond_learned_conditioning=get_multicond_learned_conditioning,
            reconstruct_cond_batch=reconstruct_cond_batch, reconstruct_multicond_batch=reconstruct_multicond_batch),
        "modules.sd_samplers_common": new_module("modules.sd_samplers_common",
                                                 InterruptedException=InterruptedException,
                                                 store_latent=store_latent),
        "modules.sd_samplers_kdiffusion": new_module("modules.sd_samplers_kdiffusion"),
    }
    if host != "a1111":  # the managed hosts wrap sampling in these
        kdiffusion = added["modules.sd_samplers_kdiffusion"]
        kdiffusion.sampling_prepare = lambda unet, x: record("sampling_prepare", unet, tuple(x.shape))
        kdiffusion.sampling_cleanup = lambda unet: record("sampling_cleanup", unet)
    from importlib.machinery import ModuleSpec

    for name, module in added.items():
        module.__spec__ = ModuleSpec(name, loader=None, is_package=True)
        setattr(tree["modules"], name.rsplit(".", 1)[1], module)
        tree[name] = module
        sys.modules[name] = module
    return env


def store_latent(decoded):
    """modules/sd_samplers_common.py: the host's live-preview hook, fed each step's denoised latent."""
    from modules import shared

    record("store_latent", tuple(decoded.shape))
    shared.state.current_latent = decoded


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    """A predictable 'VAE': image = tanh of the first three latent channels, upsampled 8× (nearest)."""
    record("decode_latent_batch", tuple(batch.shape))
    images = torch.tanh(torch.nn.functional.interpolate(batch[:, :3].float(), scale_factor=8, mode="nearest"))
    return DecodedSamples(image for image in images)

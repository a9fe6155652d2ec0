"""Fake host processing: the txt2img processing object, samplers, RNG, ``p.scripts`` and a replay of the host's
generation loop (``run_txt2img``). ``CALLS`` records what our adapter calls, in order, for every fake module.
Signatures follow A1111 1.10.1 / Forge / reForge (docs/hosts.md "The first pass").
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch

CALLS: list[tuple] = []  # (name, details...) in call order, shared by every fake module


def record(name: str, *details) -> None:
    CALLS.append((name, *details))


def call_names() -> list[str]:
    return [entry[0] for entry in CALLS]


def calls_named(name: str) -> list[tuple]:
    return [entry for entry in CALLS if entry[0] == name]


# --- modules.shared_state / shared (A1111 modules/shared_state.py:State) ------------------------------------------


class ScriptRunner:
    """``p.scripts``: only the hook our replacement calls; ``on_before_every_sampling(p, kwargs)`` lets a test act
    like another extension (ControlNet, FreeU…) that patches the UNet or swaps the noise there."""

    def __init__(self, on_before_every_sampling=None):
        self.on_before_every_sampling = on_before_every_sampling

    def process_before_every_sampling(self, p, **kwargs):
        forge_objects = getattr(p.sd_model, "forge_objects", None)
        record("process_before_every_sampling", sorted(kwargs), forge_objects)
        if self.on_before_every_sampling is not None:
            self.on_before_every_sampling(p, kwargs)


# --- samplers, rng, processing -------------------------------------------------------------------------------------
class FakeSampler:
    """Records what the host sampler sees; the 'refinement' is a deterministic function of x and noise."""

    def __init__(self, name, model):
        self.name = name
        self.model = model

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        forge_objects = getattr(p.sd_model, "forge_objects", None)
        record("sampler.sample_img2img", {
            "steps": steps, "denoising_strength": p.denoising_strength, "cfg_scale": p.cfg_scale,
            "is_hr_pass": p.is_hr_pass, "x": x.clone(), "noise": noise.clone(), "conditioning": conditioning,
            "unconditional_conditioning": unconditional_conditioning, "image_conditioning": image_conditioning,
            "unet": getattr(forge_objects, "unet", None), "forge_objects": forge_objects})
        return x * (1 - p.denoising_strength) + noise * p.denoising_strength * 0.1

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        record("sampler.sample", steps)
        return x


def create_sampler(name, model):
    record("create_sampler", name)
    assert name, f'bad sampler name: {name}'
    return FakeSampler(name, model)


class ImageRNG:
    """modules/rng.py:ImageRNG — per-image generators; ``next()`` returns ``first()`` on its first call."""

    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        record("ImageRNG", tuple(map(int, shape)), list(seeds))
        self.shape = tuple(map(int, shape))
        self.seeds = seeds
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.seed_resize_from_h = seed_resize_from_h
        self.seed_resize_from_w = seed_resize_from_w
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.is_first = True

    def first(self):
        return torch.stack([torch.randn(self.shape, generator=generator) for generator in self.generators])

    def next(self):
        if self.is_first:
            self.is_first = False
            return self.first()
        return torch.stack([torch.randn(self.shape, generator=generator) for generator in self.generators])


def seed_noise(seeds, shape) -> torch.Tensor:
    """The noise ``ImageRNG(shape, seeds).first()`` gives, computed independently for assertions."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    record("decode_latent_batch", tuple(batch.shape))
    return [torch.zeros(3, batch.shape[2] * 8, batch.shape[3] * 8) for _ in range(batch.shape[0])]


class ForgeObjects:
    """backend/diffusion_engine/base.py:ForgeObjects (reForge's ForgeSD has the same shape and shallow_copy)."""

    def __init__(self, unet, clip, vae, clipvision):
        self.unet = unet
        self.clip = clip
        self.vae = vae
        self.clipvision = clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


@dataclass
class FakeSDModel:
    """``shared.sd_model``: A1111 LatentDiffusion flags; Forge/reForge add ``forge_objects*``."""

    is_sd1: bool = True
    is_sd2: bool = False
    is_sdxl: bool = False
    is_sd3: bool = False
    lowvram: bool = False
    latent_channels: int = 4

    def to(self, device):
        record("sd_model.to", str(device))
        return self


def make_sd_model(host: str, **flags):
    model = FakeSDModel(**flags)
    if host != "a1111":  # the managed hosts' forge_objects
        vae = types.SimpleNamespace(latent_channels=model.latent_channels)
        model.forge_objects_original = ForgeObjects("unet-original", "clip", vae, None)
        model.forge_objects_after_applying_lora = ForgeObjects("unet-with-lora", "clip-with-lora", vae, None)
        model.forge_objects = ForgeObjects("unet-stale", "clip-stale", vae, None)
    return model


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img:
    """The fields and methods of the host's txt2img processing object that TinyBreaker reads or calls."""

    sd_model: object = None
    prompt: str = "a cat"
    negative_prompt: str = ""
    sampler_name: str = "Euler"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 64
    height: int = 64
    batch_size: int = 1
    n_iter: int = 1
    seed: int = 1
    denoising_strength: float = 0.7
    enable_hr: bool = False
    hr_upscaler: str | None = None
    hr_checkpoint_name: str | None = None
    hr_second_pass_steps: int = 0
    hr_cfg: float = 1.0
    firstpass_image: object = None
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    subseed_strength: float = 0.0
    token_merging_ratio: float = 0.0
    extra_generation_params: dict = field(default_factory=dict)
    infotext_params: list = field(default_factory=list)  # extra_generation_params as each image's infotext saw them
    scripts: object = None
    all_seeds: list | None = field(default=None, init=False)  # set by process_images before the process hook
    latent_scale_mode: dict | None = field(default=None, init=False)
    is_hr_pass: bool = field(default=False, init=False)
    modified_noise: object = field(default=None, init=False)

    def __post_init__(self):
        self.seeds = [self.seed + i for i in range(self.batch_size)]
        self.subseeds = [0] * self.batch_size
        self.prompts = [self.prompt] * self.batch_size
        self.negative_prompts = [self.negative_prompt] * self.batch_size
        self.rng = ImageRNG((4, self.height // 8, self.width // 8), self.seeds)

    def init(self, all_prompts, all_seeds, all_subseeds):
        """txt2img ``init``: Hires fix bookkeeping (A1111 processing.py:1252, same in F/R)."""
        from modules import shared

        if not self.enable_hr:
            return
        self.extra_generation_params["Denoising strength"] = self.denoising_strength
        latent_modes = {"Latent": {"mode": "bilinear", "antialias": False}}
        self.latent_scale_mode = latent_modes.get(self.hr_upscaler) if self.hr_upscaler is not None else \
            latent_modes["Latent"]
        state = shared.state
        if not state.processing_has_refined_job_count:
            if state.job_count == -1:
                state.job_count = self.n_iter
            if getattr(self, 'txt2img_upscale', False):
                total_steps = (self.hr_second_pass_steps or self.steps) * state.job_count
            else:
                total_steps = (self.steps + (self.hr_second_pass_steps or self.steps)) * state.job_count
            shared.total_tqdm.updateTotal(total_steps)
            state.job_count = state.job_count * 2
            state.processing_has_refined_job_count = True

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        record("original_sample", list(seeds))
        return torch.full((len(seeds), 4, self.height // 8, self.width // 8), 7.0)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        from modules import shared

        record("sample_hr_pass", samples.clone(), decoded_samples)
        shared.state.nextjob()  # A1111 processing.py:1425, before its own sampler runs
        return decode_latent_batch(self.sd_model, samples)

    def txt2img_image_conditioning(self, x, width=None, height=None):
        return x.new_zeros(x.shape[0], 5, 1, 1)

    def get_token_merging_ratio(self, for_hr=False):
        return self.token_merging_ratio


def setup_conds(p):
    """``p.setup_conds()``: the host's text encoder on this batch's prompts (after ``process_batch``), through the
    fake ``prompt_parser`` when the sampling stand-ins are installed, else placeholder objects."""
    import sys

    parser = sys.modules.get("modules.prompt_parser")
    if parser is None:
        return "c", "uc"
    prompts = parser.SdConditioning(p.prompts, width=p.width, height=p.height)
    negatives = parser.SdConditioning(p.negative_prompts, is_negative_prompt=True, width=p.width, height=p.height)
    return (parser.get_multicond_learned_conditioning(p.sd_model, prompts, p.steps),
            parser.get_learned_conditioning(p.sd_model, negatives, p.steps))


def run_txt2img(p, process_hook=None, postprocess_hook=None, *, conditioning=None, unconditional_conditioning=None,
                process_batch_hook=None, postprocess_image_hook=None, before_process_hook=None):
    """The part of ``process_images_inner`` around ``p.sample`` (A1111 processing.py:880-1014; F/R alike): the
    prompt and seed lists → ``process`` hook → ``p.init`` → job count → per batch: slices, ``process_batch`` hook,
    RNG, ``p.sample`` (keyword args), ``nextjob``."""
    from modules import shared

    state = shared.state
    if before_process_hook is not None:  # processing.process_images, before process_images_inner
        before_process_hook(p)
    total = p.n_iter * p.batch_size
    p.all_prompts = [p.prompt] * total
    p.all_negative_prompts = [p.negative_prompt] * total
    p.all_seeds = [int(p.seed) + (i if p.subseed_strength == 0 else 0) for i in range(total)]
    p.all_subseeds = [i for i in range(total)]
    if process_hook is not None:
        process_hook(p)
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    if state.job_count == -1:
        state.job_count = p.n_iter
    outputs = []
    for n in range(p.n_iter):
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        p.iteration = n
        batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
        p.prompts = p.all_prompts[batch]
        p.negative_prompts = p.all_negative_prompts[batch]
        p.seeds = p.all_seeds[batch]
        p.subseeds = [0] * p.batch_size
        if process_batch_hook is not None:
            process_batch_hook(p)
        p.rng = ImageRNG((4, p.height // 8, p.width // 8), p.seeds, subseeds=p.subseeds,
                         subseed_strength=p.subseed_strength, seed_resize_from_h=p.seed_resize_from_h,
                         seed_resize_from_w=p.seed_resize_from_w)
        c, uc = setup_conds(p) if conditioning is None else (conditioning, unconditional_conditioning)
        outputs.append(p.sample(conditioning=c, unconditional_conditioning=uc,
                                seeds=p.seeds, subseeds=p.subseeds, subseed_strength=p.subseed_strength,
                                prompts=p.prompts))
        for index in range(p.batch_size):  # per image: postprocess_image, then the host writes its infotext
            p.batch_index = index
            if postprocess_image_hook is not None:
                postprocess_image_hook(p)
            p.infotext_params.append(dict(p.extra_generation_params))
        state.nextjob()
    if postprocess_hook is not None:
        postprocess_hook(p)
    return outputs

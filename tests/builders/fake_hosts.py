"""Small stand-ins of the hosts' ``modules.*`` / ``backend.*`` / ``ldm_patched.*`` with the real signatures
(A1111 1.10.1 82a973c0, Forge dfdcbab6, reForge 3b56b268; see shared/spec/webui_hosts.md). They record the calls
our adapter makes, so tests can check the hook order and the memory calls per host without a WebUI.

Only what TinyBreaker touches is modelled; bodies are minimal but keep the real argument names and defaults.
"""

from __future__ import annotations

import contextlib
import sys
import types
from dataclasses import dataclass, field

import torch

CALLS: list[tuple] = []  # (name, details) in call order, shared by every fake module


def record(name: str, *details) -> None:
    CALLS.append((name, *details))


# --- modules.shared_state / shared ------------------------------------------------------------------------------
class State:
    def __init__(self):
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.textinfo = None

    def nextjob(self):
        record("state.nextjob")
        self.job_no += 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0

    def assign_current_image(self, image):
        self.current_image = image
        self.id_live_preview += 1


class TotalTQDM:
    def __init__(self):
        self.total = 0
        self.updates = 0

    def updateTotal(self, new_total):  # noqa: N802 (host name)
        self.total = new_total

    def update(self):
        self.updates += 1


class Options:
    def __init__(self):
        self.data = {}
        self.data_labels = {}
        self.live_previews_enable = True
        self.show_progress_every_n_steps = 1

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before='', comment_after='', infotext=None, restrict_api=False,
                 category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section


# --- samplers, rng, processing -----------------------------------------------------------------------------------
class FakeSampler:
    """Records what the host sampler sees; the 'refinement' is a deterministic function of x and noise."""

    def __init__(self, name, model):
        self.name = name
        self.model = model

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        record("sampler.sample_img2img", {"steps": steps, "denoising_strength": p.denoising_strength,
                                          "cfg_scale": p.cfg_scale, "is_hr_pass": p.is_hr_pass,
                                          "x_shape": tuple(x.shape), "noise": noise.clone()})
        return x * (1 - p.denoising_strength) + noise * p.denoising_strength * 0.1


def create_sampler(name, model):
    record("create_sampler", name)
    assert name, f'bad sampler name: {name}'
    return FakeSampler(name, model)


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape = tuple(map(int, shape))
        self.seeds = seeds
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def first(self):
        return self.next()

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=generator) for generator in self.generators])


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    record("decode_latent_batch", tuple(batch.shape))
    return [torch.zeros(3, batch.shape[2] * 8, batch.shape[3] * 8) for _ in range(batch.shape[0])]


@dataclass
class FakeSDModel:
    is_sd1: bool = True
    is_sdxl: bool = False
    lowvram: bool = False
    latent_channels: int = 4


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img:
    """The fields and methods of the host's txt2img processing object that TinyBreaker reads or calls."""

    sd_model: object = None
    prompt: str = "a cat"
    negative_prompt: str = ""
    sampler_name: str = "Euler"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 64
    height: int = 64
    batch_size: int = 1
    n_iter: int = 1
    denoising_strength: float = 0.7
    enable_hr: bool = False
    hr_checkpoint_name: str | None = None
    hr_second_pass_steps: int = 0
    latent_scale_mode: dict | None = None
    firstpass_image: object = None
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    scripts: object = None
    is_hr_pass: bool = False
    modified_noise: object = None
    extra_generation_params: dict = field(default_factory=dict)
    seeds: list = field(default_factory=lambda: [1])
    subseeds: list = field(default_factory=lambda: [2])
    subseed_strength: float = 0.0
    negative_prompts: list = field(default_factory=list)

    def __post_init__(self):
        self.rng = ImageRNG((4, self.height // 8, self.width // 8), self.seeds)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        record("original_sample")
        return torch.full((len(seeds), 4, self.height // 8, self.width // 8), 7.0)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        record("sample_hr_pass", tuple(samples.shape), decoded_samples is None)
        return decode_latent_batch(self.sd_model, samples)

    def txt2img_image_conditioning(self, x, width=None, height=None):
        return x.new_zeros(x.shape[0], 5, 1, 1)


class ScriptRunner:
    def process_before_every_sampling(self, p, **kwargs):
        record("process_before_every_sampling", sorted(kwargs))


# --- memory managers ----------------------------------------------------------------------------------------------
def send_model_to_cpu(m):
    record("sd_models.send_model_to_cpu")


def send_model_to_device(m):
    record("sd_models.send_model_to_device")


class ForgeModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, current_device=None, **kwargs):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device


class ReForgeModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device


def forge_load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    record("memory_management.load_models_gpu", [type(m.model).__name__ for m in models], memory_required)
    for patcher in models:
        patcher.model.to(patcher.load_device)


def forge_free_memory(memory_required, device, keep_loaded=[], free_all=False):  # noqa: B006 (host signature)
    record("memory_management.free_memory", memory_required, str(device))


def reforge_load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                            force_full_load=False):
    record("model_management.load_models_gpu", [type(m.model).__name__ for m in models], force_full_load)
    for patcher in models:
        patcher.model.to(patcher.load_device)


def reforge_free_memory(memory_required, device, keep_loaded=[]):  # noqa: B006 (host signature)
    record("model_management.free_memory", memory_required, str(device))


# --- assembling the module trees ------------------------------------------------------------------------------------
HOST_ROOT_MODULES = ("modules", "backend", "ldm_patched", "modules_forge")


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    module.__path__ = []  # every fake is a package, so submodules import
    return module


def build_host(host: str, models_path: str, device: str = "cpu") -> dict[str, types.ModuleType]:
    """Fake module tree for 'a1111', 'forge' or 'reforge'."""
    device = torch.device(device)
    state, opts = State(), Options()
    cmd_opts = types.SimpleNamespace(api_auth=None, tinybreaker_dir=None, lowvram=False, medvram=False)
    shared = _module("modules.shared", state=state, opts=opts, cmd_opts=cmd_opts, total_tqdm=TotalTQDM(),
                     device=device, OptionInfo=OptionInfo, sd_model=FakeSDModel())
    devices = _module("modules.devices", device=device, cpu=torch.device("cpu"),
                      get_device_for=lambda task: device, torch_gc=lambda: record("devices.torch_gc"),
                      without_autocast=lambda disable=False: contextlib.nullcontext(),
                      autocast=lambda disable=False: contextlib.nullcontext())
    tree = {
        "modules": _module("modules"),
        "modules.shared": shared,
        "modules.devices": devices,
        "modules.paths": _module("modules.paths", models_path=models_path, script_path=models_path),
        "modules.sd_samplers": _module("modules.sd_samplers", create_sampler=create_sampler),
        "modules.rng": _module("modules.rng", ImageRNG=ImageRNG),
        "modules.processing": _module("modules.processing", decode_latent_batch=decode_latent_batch,
                                      StableDiffusionProcessingTxt2Img=StableDiffusionProcessingTxt2Img),
        "modules.sd_models": _module("modules.sd_models", send_model_to_cpu=send_model_to_cpu,
                                     send_model_to_device=send_model_to_device),
        "modules.scripts": _module("modules.scripts", scripts_data=[], AlwaysVisible=object()),
    }
    if host == "forge":
        tree["modules_forge"] = _module("modules_forge")
        tree["backend"] = _module("backend")
        tree["backend.memory_management"] = _module(
            "backend.memory_management", get_torch_device=lambda: device, load_models_gpu=forge_load_models_gpu,
            free_memory=forge_free_memory, current_loaded_models=[])
        tree["backend.patcher"] = _module("backend.patcher")
        tree["backend.patcher.base"] = _module("backend.patcher.base", ModelPatcher=ForgeModelPatcher)
    elif host == "reforge":
        tree["modules_forge"] = _module("modules_forge")
        tree["ldm_patched"] = _module("ldm_patched")
        tree["ldm_patched.modules"] = _module("ldm_patched.modules")
        tree["ldm_patched.modules.model_management"] = _module(
            "ldm_patched.modules.model_management", get_torch_device=lambda: device,
            load_models_gpu=reforge_load_models_gpu, free_memory=reforge_free_memory)
        tree["ldm_patched.modules.model_patcher"] = _module("ldm_patched.modules.model_patcher",
                                                           ModelPatcher=ReForgeModelPatcher)
    for name, module in tree.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(tree[parent], child, module)
    return tree


@contextlib.contextmanager
def installed_host(host: str, models_path: str, device: str = "cpu"):
    """Put a fake host into sys.modules (and take it out again), resetting our cached host adapter."""
    from importlib.machinery import ModuleSpec

    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] in HOST_ROOT_MODULES}
    for name in saved:
        del sys.modules[name]
    tree = build_host(host, models_path, device)
    for name, module in tree.items():
        module.__spec__ = ModuleSpec(name, loader=None, is_package=True)
    sys.modules.update(tree)
    CALLS.clear()
    from tinybreaker_ext.webui import host as host_module

    host_module._adapter = None
    try:
        yield tree
    finally:
        for name in tree:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        host_module._adapter = None

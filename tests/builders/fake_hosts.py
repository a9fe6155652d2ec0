"""Small stand-ins of the hosts' ``modules.*`` / ``backend.*`` / ``ldm_patched.*`` with the real signatures
(A1111 1.10.1 82a973c0, Forge dfdcbab6, reForge 3b56b268; hook order: docs/hosts.md "The first pass"). They record
the calls our adapter makes, so tests can check the hook order and the memory calls per host without a WebUI.

Only what TinyBreaker touches is modelled; bodies are minimal but keep the real argument names and defaults.
``run_txt2img`` replays the part of the host's ``process_images_inner`` that surrounds ``p.sample`` (the hook order
above), including txt2img ``init``'s Hires-fix job-count bookkeeping.
"""

from __future__ import annotations

import contextlib
import sys
import types
import weakref

import torch

from builders.fake_host_processing import (CALLS, ImageRNG, ScriptRunner, StableDiffusionProcessingTxt2Img,
                                           call_names, calls_named, create_sampler, decode_latent_batch,
                                           make_sd_model, record, run_txt2img, seed_noise)
from builders.fake_host_ui import (AlwaysVisible, Script, ScriptClassData, script_callbacks_module,
                                   ui_common_module, ui_components_module, fake_gradio_module, load_script_file,
                                   new_module as _module)

HOSTS = ("a1111", "forge", "reforge", "neo", "classic")
MANAGED_HOSTS = ("forge", "reforge", "neo", "classic")  # a ComfyUI-style memory manager loads our modules
BACKEND_HOSTS = ("forge", "neo")  # its module names: backend.* (the others: ldm_patched.*)
FORGE_VERSION = {"forge": "2.0.1v1.10.1", "reforge": "1.0.0v2-v1.10.1RC", "neo": "neo", "classic": "classic"}

__all__ = ["BACKEND_HOSTS", "CALLS", "HOSTS", "MANAGED_HOSTS", "WeakManager", "ImageRNG", "Script", "ScriptRunner", "StableDiffusionProcessingTxt2Img", "build_host",
           "call_names", "calls_named", "fake_gradio_module", "installed_host", "load_script_file", "make_sd_model",
           "record", "run_txt2img", "seed_noise"]


class State:
    """modules/shared_state.py:State, the fields and methods our progress code uses."""

    def __init__(self):
        self.begin()

    def begin(self, job: str = "(unknown)"):
        self.sampling_step = 0
        self.sampling_steps = 0
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.job_no = 0
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.textinfo = None
        self.job = job

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

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

    def clear(self):
        self.updates = 0


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


# --- modules.script_callbacks (same set in A/F; R lacks on_list_optimizers) -----------------------------------------


# --- memory managers -------------------------------------------------------------------------------------------------
class Upscaler:
    """``modules.upscaler.Upscaler``: ``upscale`` runs the model (here: nearest-neighbour ×``factor``) and resizes
    to whole multiples of 8 of ``scale`` times the size with Lanczos, as every host does."""

    def __init__(self, factor: int = 4):
        self.factor, self.scale = factor, 1

    def do_upscale(self, img, selected_model):
        from PIL import Image

        if self.factor == 1:
            return img
        return img.resize((img.width * self.factor, img.height * self.factor), resample=Image.NEAREST)

    def upscale(self, img, scale, selected_model=None):
        from PIL import Image

        record("upscaler.upscale", img.size, scale, selected_model)
        self.scale = scale
        dest_w, dest_h = int((img.width * scale) // 8 * 8), int((img.height * scale) // 8 * 8)
        img = self.do_upscale(img, selected_model)
        if img.size != (dest_w, dest_h):
            img = img.resize((dest_w, dest_h), resample=Image.LANCZOS)
        return img


class UpscalerData:
    """``modules.upscaler.UpscalerData``: one entry of ``shared.sd_upscalers``."""

    def __init__(self, name: str, path: str, upscaler=None, scale: int = 4, model=None):
        self.name, self.data_path, self.scaler, self.scale, self.model = name, path, upscaler, scale, model


def host_upscalers() -> list[UpscalerData]:
    """What a host lists after ``modelloader.load_upscalers()``: its "None", Lanczos and an ESRGAN-class model."""
    return [UpscalerData("None", None, Upscaler(1)), UpscalerData("Lanczos", None, Upscaler(1)),
            UpscalerData("R-ESRGAN 4x+", "/models/RealESRGAN/RealESRGAN_x4plus.pth", Upscaler(4))]


def send_model_to_cpu(m):
    record("sd_models.send_model_to_cpu")


def send_model_to_device(m):
    record("sd_models.send_model_to_device")


def apply_token_merging(sd_model, token_merging_ratio):
    """Forge/reForge: patches ``forge_objects.unet`` (ToMe) when the ratio is positive."""
    record("sd_models.apply_token_merging", token_merging_ratio)
    if token_merging_ratio <= 0:
        return
    sd_model.forge_objects.unet = f"tome({sd_model.forge_objects.unet}, {token_merging_ratio})"


class ForgeModelPatcher:
    """backend/patcher/base.py:ModelPatcher.__init__ signature."""

    def __init__(self, model, load_device, offload_device, size=0, current_device=None, **kwargs):
        record("ModelPatcher", self, model, load_device, offload_device)
        self.size = size
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device


class ReForgeModelPatcher:
    """ldm_patched/modules/model_patcher.py:ModelPatcher.__init__ signature."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        record("ModelPatcher", self, model, load_device, offload_device)
        self.size = size
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device


def forge_load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    record("memory_management.load_models_gpu", list(models), memory_required)


def forge_free_memory(memory_required, device, keep_loaded=[], free_all=False):  # noqa: B006 (host signature)
    record("memory_management.free_memory", memory_required, str(device))


class NeoModelPatcher(ReForgeModelPatcher):
    """backend/patcher/base.py:ModelPatcher.__init__ of Forge Neo (ComfyUI's, with current_device)."""

    def __init__(self, model, load_device, offload_device, size=0, current_device=None, weight_inplace_update=False):
        super().__init__(model, load_device, offload_device, size)


class ClassicModelPatcher(NeoModelPatcher):
    """ldm_patched/modules/model_patcher.py:ModelPatcher.__init__ of Forge Classic (same signature as Neo's)."""


class WeakManager:
    """Neo's and reForge's manager keeps only weak references to the patchers it loaded (LoadedModel._model) and to
    the module they manage; a loaded model whose patcher died while its module lives is a leak it can never evict
    (backend/memory_management.py: cleanup_models_gc logs "Memory Leak with model …")."""

    def __init__(self):
        self.loaded: list[tuple[weakref.ref, weakref.ref]] = []

    def load(self, models) -> None:
        for patcher in models:
            if not any(ref() is patcher for ref, _ in self.loaded):
                self.loaded.append((weakref.ref(patcher), weakref.ref(patcher.model)))

    def leaks(self) -> list[str]:
        return [type(model()).__name__ for patcher, model in self.loaded if patcher() is None and model() is not None]


def reforge_load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                            force_full_load=False):
    record("model_management.load_models_gpu", list(models), memory_required, force_full_load)
    _write_device(models)


def neo_load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
    record("memory_management.load_models_gpu", list(models), memory_required, force_full_load)
    _write_device(models)


def classic_load_models_gpu(models, memory_required=0):
    record("model_management.load_models_gpu", list(models), memory_required)
    _write_device(models)


def _write_device(models) -> None:
    for patcher in models:  # the ComfyUI-era ModelPatcher.load writes these onto the managed module
        patcher.model.device = patcher.load_device
        patcher.model.model_lowvram = False


# What the stand-in managers' get_free_memory answers for a CUDA device (tests set it); on the CPU they answer with
# the system's available RAM, like the hosts (psutil).
FREE_DEVICE_BYTES = {"value": 64 * 1024**3}


def get_free_memory(dev=None, torch_free_too=False):
    """get_free_memory of every Forge-family manager (backend/memory_management.py, model_management.py)."""
    import psutil

    record("get_free_memory", str(dev))
    free = psutil.virtual_memory().available if dev is not None and torch.device(dev).type == "cpu" else \
        FREE_DEVICE_BYTES["value"]
    return (free, 0) if torch_free_too else free


def reforge_free_memory(memory_required, device, keep_loaded=[]):  # noqa: B006 (host signature)
    record("model_management.free_memory", memory_required, str(device))


def neo_free_memory(memory_required, device, keep_loaded=[]):  # noqa: B006 (host signature)
    record("memory_management.free_memory", memory_required, str(device))


def _keeping_weak_references(load_models_gpu, manager: WeakManager):
    """The host's load_models_gpu (same signature) that also registers the models with a WeakManager."""
    import functools

    @functools.wraps(load_models_gpu)
    def load(*args, **kwargs):
        result = load_models_gpu(*args, **kwargs)
        manager.load(kwargs.get("models", args[0] if args else []))
        return result

    return load


# --- assembling the module trees --------------------------------------------------------------------------------------
HOST_ROOT_MODULES = ("modules", "backend", "ldm_patched", "modules_forge")


def build_host(host: str, models_path: str, device: str = "cpu") -> dict[str, types.ModuleType]:
    """Fake module tree for one of HOSTS. ``device`` is what the host reports as its compute device; tensors stay on
    the CPU (module moves to a non-CPU device are only recorded by the test modules)."""
    if host not in HOSTS:
        raise ValueError(f"host must be one of {HOSTS}, got {host!r}")
    device = torch.device(device)
    state, opts = State(), Options()
    cmd_opts = types.SimpleNamespace(api_auth=None, tinybreaker_dir=None, lowvram=False, medvram=False, use_cpu=[])
    shared = _module("modules.shared", state=state, opts=opts, cmd_opts=cmd_opts, total_tqdm=TotalTQDM(),
                     device=torch.device("cpu"), OptionInfo=OptionInfo, sd_model=make_sd_model(host),
                     sd_upscalers=host_upscalers())

    def torch_gc():
        record("devices.torch_gc")

    def without_autocast(disable=False):
        record("devices.without_autocast")
        return contextlib.nullcontext()

    devices = _module("modules.devices", device=device, cpu=torch.device("cpu"),
                      get_device_for=lambda task: device, torch_gc=torch_gc, without_autocast=without_autocast,
                      autocast=lambda disable=False: contextlib.nullcontext())
    scripts = _module("modules.scripts", scripts_data=[], AlwaysVisible=AlwaysVisible, Script=Script,
                      ScriptClassData=ScriptClassData, ScriptRunner=ScriptRunner)
    ui_components = ui_components_module()
    sd_models = _module("modules.sd_models", apply_token_merging=apply_token_merging)
    if host != "neo":  # Neo has no manual model moves
        sd_models.send_model_to_cpu, sd_models.send_model_to_device = send_model_to_cpu, send_model_to_device
    tree = {
        "modules": _module("modules"),
        "modules.shared": shared,
        "modules.devices": devices,
        "modules.paths": _module("modules.paths", models_path=models_path, script_path=models_path,
                                 data_path=models_path),
        "modules.sd_samplers": _module("modules.sd_samplers", create_sampler=create_sampler),
        "modules.rng": _module("modules.rng", ImageRNG=ImageRNG),
        "modules.processing": _module("modules.processing", decode_latent_batch=decode_latent_batch,
                                      StableDiffusionProcessingTxt2Img=StableDiffusionProcessingTxt2Img),
        "modules.sd_models": sd_models,
        "modules.upscaler": _module("modules.upscaler", Upscaler=Upscaler, UpscalerData=UpscalerData),
        "modules.scripts": scripts,
        "modules.script_callbacks": script_callbacks_module(),
        "modules.ui_components": ui_components,
        "modules.ui_common": ui_common_module(ui_components),
    }
    if host in MANAGED_HOSTS:
        tree["modules_forge"] = _module("modules_forge")
        tree["modules_forge.forge_version"] = _module("modules_forge.forge_version", version=FORGE_VERSION[host])
        manager = WeakManager()
        load, free, patcher = {
            "forge": (forge_load_models_gpu, forge_free_memory, ForgeModelPatcher),
            "neo": (neo_load_models_gpu, neo_free_memory, NeoModelPatcher),
            "reforge": (reforge_load_models_gpu, reforge_free_memory, ReForgeModelPatcher),
            "classic": (classic_load_models_gpu, reforge_free_memory, ClassicModelPatcher),
        }[host]
        if host in ("neo", "reforge"):
            load = _keeping_weak_references(load, manager)
        if host in BACKEND_HOSTS:
            root, manager_name, patcher_name = "backend", "backend.memory_management", "backend.patcher.base"
            tree["backend.patcher"] = _module("backend.patcher")
        else:
            root, manager_name = "ldm_patched", "ldm_patched.modules.model_management"
            patcher_name = "ldm_patched.modules.model_patcher"
            tree["ldm_patched.modules"] = _module("ldm_patched.modules")
        tree[root] = _module(root)
        tree[manager_name] = _module(manager_name, get_torch_device=lambda: device, load_models_gpu=load,
                                     free_memory=free, get_free_memory=get_free_memory, current_loaded_models=[],
                                     weak_manager=manager)
        tree[patcher_name] = _module(patcher_name, ModelPatcher=patcher)
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

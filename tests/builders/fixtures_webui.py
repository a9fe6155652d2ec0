"""Fixtures for the WebUI adapter tests: a fake host per WebUI (``tb_host`` runs a test once per host), a tiny
models folder the real ModelFinder classifies, and a fake engine standing in for the core pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from builders.fake_host_sampling import install_host_sampling
from builders.fake_hosts import HOSTS, ScriptRunner, StableDiffusionProcessingTxt2Img, installed_host, record, \
    run_txt2img
from builders.files import TINYBREAKER_METADATA, t5_keys, tinybreaker_keys, write_model

CHECKPOINT_NAME = "tinybreaker_prototype1.safetensors"
T5_NAME = "t5xxl_tiny.safetensors"
TRANSCODE_SCALE, TRANSCODE_SHIFT = 0.5, 1.0  # the fake transcoder's affine map, so tests can predict its output


class RecordingModule(nn.Module):
    """One of our models; a move to a non-CPU device is recorded instead of done (no accelerator in tests)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(torch.zeros(2))

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        device = torch.device(target) if isinstance(target, (str, torch.device)) else None
        record("module.to", self.name, str(device))
        if device is None or device.type == "cpu":
            return super().to(*args, **kwargs)
        return self


class FakeEngine:
    """The core pipeline's interface (``base``, ``transcode``, ``preview_image``, ``last_denoised``) with
    predictable numbers: image k's base latent depends only on its seed; the step count is the stage's window."""

    def __init__(self, has_transcoder: bool = True):
        from types import SimpleNamespace

        self.has_transcoder = has_transcoder  # False: a TinyBreaker file with an SDXL refiner
        self.checkpoint_info = SimpleNamespace(description="TinyBreaker prototype1 checkpoint" if has_transcoder
                                               else "TinyBreaker checkpoint with an SDXL refiner")
        self.pixart = RecordingModule("pixart")
        self.transcoder = RecordingModule("transcoder")
        self.last_denoised = None
        self.base_calls: list[dict] = []
        self.steps_run = 0
        self.previews = 0
        self.before_step = None  # test hook: called with the global step index before each step

    @staticmethod
    def latent_for(seed: int, width: int, height: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(10_000 + int(seed))
        return torch.randn((1, 4, height // 8, width // 8), generator=generator)

    def base(self, texts, negative_texts, stage, sigmas, *, width, height, seeds, placement, t5_mode, callback):
        record("engine.base", list(seeds))
        self.base_calls.append({"texts": list(texts), "negative_texts": list(negative_texts), "stage": stage,
                                "sigmas": sigmas, "width": width, "height": height, "seeds": list(seeds),
                                "t5_mode": t5_mode})
        placement.make_room(4096)
        steps = len(sigmas) - 1
        self.last_denoised = None
        final = torch.cat([self.latent_for(seed, width, height) for seed in seeds])
        with placement.use(self.pixart):  # all images together, one model call per step, as the real pipeline
            for step in range(steps):
                self.steps_run += 1
                if self.before_step is not None:
                    self.before_step(step)
                denoised = final * (step + 1) / steps
                self.last_denoised = denoised
                callback(step, steps, final, denoised)
        return final

    def transcode(self, latent, *, placement):
        record("engine.transcode", tuple(latent.shape))
        with placement.use(self.transcoder):
            return latent * TRANSCODE_SCALE + TRANSCODE_SHIFT

    def preview_image(self, denoised):
        from PIL import Image

        self.previews += 1
        return Image.new("RGB", (denoised.shape[-1] * 8, denoised.shape[-2] * 8))


def write_models_folder(models_path) -> dict[str, str]:
    """``<models>/TinyBreaker`` with a tiny prototype1 checkpoint and a tiny T5 file (real key layouts)."""
    folder = os.path.join(models_path, "TinyBreaker")
    os.makedirs(folder, exist_ok=True)
    return {"checkpoint": write_model(os.path.join(folder, CHECKPOINT_NAME), tinybreaker_keys(), TINYBREAKER_METADATA),
            "t5": write_model(os.path.join(folder, T5_NAME), t5_keys())}


@dataclass
class HostEnv:
    """A fake host with TinyBreaker's files in place and the engine replaced; helpers build and run jobs."""

    name: str
    tree: dict
    models_path: str
    files: dict
    engine: FakeEngine
    sampling: object = None  # the CFG-denoiser stand-ins' record (builders.fake_host_sampling.SamplingEnv)
    runner: ScriptRunner = field(default_factory=ScriptRunner)

    @property
    def shared(self):
        return self.tree["modules.shared"]

    @property
    def state(self):
        return self.shared.state

    def make_p(self, **fields) -> StableDiffusionProcessingTxt2Img:
        p = StableDiffusionProcessingTxt2Img(sd_model=self.shared.sd_model, **fields)
        p.scripts = self.runner
        return p

    def run(self, p, args):
        """The host job: ``state.begin()`` then process → init → batches (``p.sample``) → postprocess."""
        from tinybreaker_ext.webui import script_logic

        self.state.begin(job="txt2img")
        return run_txt2img(p, lambda q: script_logic.process(q, *args), script_logic.postprocess,
                           process_batch_hook=script_logic.process_batch,
                           postprocess_image_hook=script_logic.postprocess_image,
                           before_process_hook=lambda q: script_logic.before_process(q, *args))


@pytest.fixture(scope="session")
def webui_models_path(tmp_path_factory):
    models_path = str(tmp_path_factory.mktemp("webui_models"))
    return models_path, write_models_folder(models_path)


@pytest.fixture
def make_tb_host(webui_models_path, monkeypatch):
    """``make_tb_host(host, device="cpu")`` → HostEnv; the fake host stays installed until the test ends."""
    from tinybreaker_ext.webui.run_plan import RunPlan

    models_path, files = webui_models_path
    stack = []

    def make(host: str, device: str = "cpu") -> HostEnv:
        context = installed_host(host, models_path, device)
        tree = context.__enter__()
        stack.append(context)
        env = HostEnv(host, tree, models_path, files, FakeEngine(), sampling=install_host_sampling(tree, host))
        # Looked up at each call, so a test can swap in another engine (another checkpoint selected).
        monkeypatch.setattr(RunPlan, "load_engine", lambda self, host_adapter: env.engine)
        return env

    yield make
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture(params=HOSTS)
def tb_host(request, make_tb_host) -> HostEnv:
    return make_tb_host(request.param)

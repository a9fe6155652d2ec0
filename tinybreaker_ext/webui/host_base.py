"""What every host adapter provides. One subclass per host; the rest of the WebUI layer only talks to this."""

from __future__ import annotations

import contextlib

import torch


class HostAdapter:
    name = "generic"

    def compute_device(self) -> torch.device:
        raise NotImplementedError

    def compute_dtype(self, device: torch.device, preference: str = "auto") -> torch.dtype:
        """PixArt/TAESD dtype: the user's setting, else bf16 where the GPU has it, fp16 on other GPUs, fp32 on CPU."""
        if preference in ("fp32", "float32") or device.type == "cpu":
            return torch.float32
        if preference in ("fp16", "float16"):
            return torch.float16
        if preference in ("bf16", "bfloat16"):
            return torch.bfloat16
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def placement(self):
        """A ``tinybreaker_ext.placement.ModulePlacement`` backed by the host's memory manager."""
        raise NotImplementedError

    def free_memory(self, device: torch.device, sd_model=None) -> tuple[int | None, int | None]:
        """(free RAM, free memory on ``device`` for TinyBreaker) in bytes, None where unknown; the device reading is
        None on a CPU (everything is RAM there). Here: what the system and CUDA report now. Adapters add what the
        host gives up for our stage (``sd_model``: the job's loaded checkpoint, when there is a job)."""
        from ..models.t5_policy import available_ram_bytes

        free_device = None
        if device.type == "cuda":
            free_device = int(torch.cuda.mem_get_info(device)[0])
        return available_ram_bytes(), free_device

    def before_tinybreaker(self, sd_model) -> None:
        """Make room on the device for our stage (the host model may have to leave)."""

    def after_tinybreaker(self, sd_model) -> None:
        """Give the device back so the host's refine pass finds its model where it expects it."""

    def before_host_sampling(self, p) -> None:
        """Host bookkeeping the txt2img ``sample()`` does right before its sampler (Forge/reForge LoRA objects)."""

    def first_pass_decoded(self, decoded: torch.Tensor) -> torch.Tensor:
        """The decoded first pass [B, 3, H, W] in [-1, 1], in the form the host's ``sample_hr_pass`` takes (the
        decoder's range: A1111, Forge, Classic and reForge convert inside it)."""
        return decoded

    def no_autocast(self):
        return contextlib.nullcontext()

    def latent_channels(self, sd_model) -> int:
        return int(getattr(sd_model, "latent_channels", 4))

    def refiner_family(self, sd_model) -> str | None:
        """"sd1" or "sdxl" when the loaded checkpoint can refine our base (4 latent channels, the host's own family
        flags), else None. SDXL takes PixArt's latent as it is; SD1 gets it through the transcoder."""
        if self.latent_channels(sd_model) != 4:
            return None
        for flag, family in (("is_sdxl", "sdxl"), ("is_sd1", "sd1")):
            if getattr(sd_model, flag, False) is True:
                return family
        return None

    def describe_model(self, sd_model) -> str:
        for flag, label in (("is_sdxl", "SDXL"), ("is_sd3", "SD3"), ("is_sd2", "SD2"), ("is_flux", "Flux")):
            if getattr(sd_model, flag, False):
                return label
        if sd_model is None or type(sd_model).__name__ == "FakeInitialModel":
            return "no model"
        return type(sd_model).__name__

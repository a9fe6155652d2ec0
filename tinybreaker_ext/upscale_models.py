"""The command line's upscale models (``--upscale-model``, docs/numerics.md "Tiny Upscaler", step 0): ESRGAN and the
other single-image architectures spandrel recognises by their keys, read from ``.safetensors`` only (never unpickled).
spandrel is optional: without it the option is refused with what to install."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ModelFileError, ModelNotFoundError, ParameterError

FIELD = "upscale_model"
MODEL_DIRS = ("upscale_models", "ESRGAN", "RealESRGAN", "DAT", "SwinIR", "HAT")  # ComfyUI's, then the WebUIs'
# Tiles as ComfyUI's upscale-with-model node: 512 input pixels, 32 of overlap (blended; models.tiled).
TILE_PX, TILE_OVERLAP_PX = 512, 32


@dataclass
class UpscaleModel:
    module: torch.nn.Module  # what a placement moves (the descriptor's network)
    scale: int
    architecture: str

    def upscale(self, images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] → [B, 3, H·scale, W·scale] in [0, 1] (float32, CPU), in blended tiles."""
        from .models.tiled import tiled_decode

        device = torch.device(device) if device is not None else images.device
        dtype = next(self.module.parameters()).dtype

        def run(tile: torch.Tensor) -> torch.Tensor:
            return self.module(tile.to(device=device, dtype=dtype)).float().cpu()

        # tiled_decode's tiling in "latent" units is this model's input pixels; its output is `scale` times larger.
        overlap_percent = TILE_OVERLAP_PX * 400 // TILE_PX
        with torch.no_grad():
            out = tiled_decode(run, images.float().cpu(), tile_px=TILE_PX * self.scale,
                               overlap_percent=overlap_percent, scale=self.scale)
        return out.clamp(0.0, 1.0)


def find_upscale_model(name: str, models_dir: str) -> str:
    """A path as given, or a file name looked for in the models folder's upscale-model folders."""
    if os.path.isfile(name):
        return name
    folders = [os.path.join(models_dir, folder) for folder in MODEL_DIRS]
    for folder in folders:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    found = sorted(entry for folder in folders if os.path.isdir(folder) for entry in os.listdir(folder)
                   if entry.endswith(".safetensors"))
    raise ModelNotFoundError(f"the upscale model {name!r}", [name, *folders],
                             hint="give --upscale-model a .safetensors file's path or name; found: "
                                  f"{', '.join(found) or 'none'}")


def check_upscale_model_file(path: str) -> None:
    """Before anything is computed: a .safetensors file, and spandrel importable."""
    if not path.lower().endswith(".safetensors"):
        raise ParameterError(FIELD, f"{os.path.basename(path)!r} is not a .safetensors file: only .safetensors "
                                    "upscale models are read (a .pth or .ckpt would have to be unpickled, which "
                                    "TinyBreaker never does); convert it, or choose 'none'")
    _spandrel()


def load_upscale_model(path: str) -> UpscaleModel:
    """The model in ``path`` (a .safetensors file), recognised and sized by spandrel from its keys and shapes."""
    check_upscale_model_file(path)
    from .files.safetensors_file import SafetensorsFile

    spandrel = _spandrel()
    with SafetensorsFile(path) as file:
        state_dict = {key: file[key] for key in file}
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in state_dict:  # some SwinIR files, as ComfyUI
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except Exception as error:  # spandrel's UnsupportedModelError and shape mismatches: the file is at fault
        raise ModelFileError(path, f"is not an upscale model spandrel knows ({_first_line(error)})",
                             "an ESRGAN-class .safetensors upscale model") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3 \
            or descriptor.output_channels != 3:
        raise ModelFileError(path, "is not a single-image RGB upscale model",
                             "an ESRGAN-class .safetensors upscale model")
    return UpscaleModel(module=descriptor.model.eval(), scale=int(descriptor.scale),
                        architecture=descriptor.architecture.name)


def _spandrel():
    try:
        import spandrel
    except Exception as error:  # missing, or broken (a torchvision that does not match torch)
        raise ParameterError(FIELD, f"needs the spandrel package to run an upscale model ({_first_line(error)}); "
                                    "install it with 'pip install spandrel', or choose 'none'") from None
    return spandrel


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__

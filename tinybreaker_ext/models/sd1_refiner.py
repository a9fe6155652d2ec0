"""The embedded SD1 refiner: the ldm-named UNet of the TinyBreaker file, run through diffusers' UNet2DConditionModel.

The WebUI normally refines with its own SD1 model; this copy serves the command line and is a fall-back. It needs
diffusers, which A1111 lacks, so diffusers is imported only when a model is built.
"""

from __future__ import annotations

import importlib
from itertools import chain
from typing import Callable, Mapping

import torch

from ..errors import ModelFileError, TinyBreakerError
from ..files.state_dict import source_name
from ..latent_formats import SD1_SCALE
from .unet_config import EXPECTED_UNET, SD1_NUM_HEADS, UNetConfig, infer_unet_config

DIFFUSERS_MISSING = "the embedded refiner needs diffusers (pip install diffusers)"
_LDM_UNET_PREFIX = "model.diffusion_model."  # what diffusers' single-file converter expects in front of UNet keys


def require_diffusers(module: str = "diffusers"):
    """Imports ``module`` of diffusers, or raises the one-line error that tells the user what to install."""
    try:
        importlib.import_module("diffusers")  # first, so that a hidden/missing package is noticed before submodules
        return importlib.import_module(module)
    except ImportError as exc:
        raise TinyBreakerError(f"{DIFFUSERS_MISSING}; importing it failed: {exc}") from exc


def build_with_weights(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor], *,
                       device, dtype: torch.dtype, source: str, expected: str,
                       rebuild_buffers: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Builds the module on the meta device (no memory, no random init) and adopts ``tensors`` cast to device/dtype.

    ``tensors`` is consumed (emptied) so that each source tensor can be freed as soon as its cast copy exists.
    Every parameter and persistent buffer must be supplied with the right shape; extra tensors are an error too.
    ``rebuild_buffers(module)`` recreates non-persistent buffers (they are not in any state dict).
    """
    with torch.device("meta"):
        module = build()
    wanted = module.state_dict()
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise ModelFileError(source, f"missing {len(missing)} tensors, e.g. '{missing[0]}'", expected)
    unexpected = [key for key in tensors if key not in wanted]
    if unexpected:
        raise ModelFileError(source, f"{len(unexpected)} unexpected tensors, e.g. '{unexpected[0]}'", expected)
    adopted = {}
    for key, reference in wanted.items():
        tensor = tensors.pop(key)
        if tuple(tensor.shape) != tuple(reference.shape):
            raise ModelFileError(source, f"tensor '{key}' has shape {list(tensor.shape)}, "
                                         f"the model needs {list(reference.shape)}", expected)
        adopted[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
    module.load_state_dict(adopted, strict=True, assign=True)
    if rebuild_buffers is not None:
        rebuild_buffers(module)
    still_meta = [name for name, t in chain(module.named_parameters(), module.named_buffers()) if t.is_meta]
    if still_meta and torch.device(device).type != "meta":
        raise RuntimeError(f"{type(module).__name__}: no values for {still_meta}")  # a non-persistent buffer
    return module.eval().requires_grad_(False)


def convert_ldm_unet_state_dict(state_dict: Mapping[str, torch.Tensor],
                                config: UNetConfig) -> dict[str, torch.Tensor]:
    """ldm/CompVis UNet names (SD1 or SDXL) -> diffusers names, with diffusers' own single-file converter."""
    single_file = require_diffusers("diffusers.loaders.single_file_utils")
    prefixed = {_LDM_UNET_PREFIX + key: state_dict[key] for key in state_dict.keys()}
    # Same function and mapping in diffusers 0.31.0, 0.32.2 and 0.42.1 (checked); it reads only 'layers_per_block'
    # and the optional class/addition embedding entries of the config (SDXL's label_emb -> add_embedding).
    return single_file.convert_ldm_unet_checkpoint(prefixed, config.to_diffusers())


def load_ldm_unet(state_dict: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype,
                  num_heads: int = SD1_NUM_HEADS) -> torch.nn.Module:
    """A ``diffusers.UNet2DConditionModel`` with the weights of an ldm-named SD1 or SDXL UNet (keys without any
    prefix); ``num_heads`` applies to SD1 (SDXL's heads follow from its 64-channel rule)."""
    unet_class = require_diffusers("diffusers").UNet2DConditionModel  # before reading any tensor
    source = source_name(state_dict)
    config = infer_unet_config(state_dict, num_heads=num_heads, source=source)
    tensors = convert_ldm_unet_state_dict(state_dict, config)
    unet = build_with_weights(lambda: unet_class(**config.to_diffusers()), tensors,
                              device=device, dtype=dtype, source=source, expected=EXPECTED_UNET)
    unet.ldm_config = config
    return unet


class SD1Refiner(torch.nn.Module):
    """An eps-predicting SD1 UNet plus the facts a sampler needs about it.

    ``eps`` is the ``eps_fn(x_in, timestep, context)`` of ``sampling.denoisers.EpsDenoiser``: wrap it as
    ``EpsDenoiser(refiner.eps, discrete_sigmas(refiner.schedule, refiner.beta_start, refiner.beta_end))`` to get the
    ``model_fn(x, sigma, context) -> x0`` that CFG uses. The schedule is SD1's 1000 'scaled_linear' betas,
    0.00085 -> 0.012. Latents are model-space (raw x 0.18215).
    """

    schedule = "scaled_linear"
    beta_start = 0.00085
    beta_end = 0.012
    num_train_timesteps = 1000
    prediction_type = "eps"
    latent_scale = SD1_SCALE

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype) -> "SD1Refiner":
        return cls(load_ldm_unet(state_dict, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @torch.no_grad()
    def eps(self, x_scaled: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted noise for ``x_scaled`` (= x * c_in) at integer-valued ``timestep`` [B].

        ``context`` is [B or 1, L, C] text conditioning; the result has the dtype of ``x_scaled``.
        """
        if context.shape[0] == 1 and x_scaled.shape[0] > 1:
            context = context.expand(x_scaled.shape[0], -1, -1)
        timestep = torch.as_tensor(timestep, device=self.device).reshape(-1).float()
        out = self.unet(x_scaled.to(self.device, self.dtype), timestep,
                        encoder_hidden_states=context.to(self.device, self.dtype), return_dict=False)[0]
        return out.to(x_scaled.dtype)

    forward = eps

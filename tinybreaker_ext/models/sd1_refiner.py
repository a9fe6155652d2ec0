"""The embedded SD1 refiner for the command line (the WebUI refines with its own model): the file's ldm-named UNet
through diffusers' UNet2DConditionModel; diffusers (absent on A1111) is imported only when a model is built."""

from __future__ import annotations

import importlib
import re
from functools import partial
from typing import Callable, Mapping

import torch

from ..errors import ModelFileError, TinyBreakerError
from ..files.state_dict import required_shape, source_name

DIFFUSERS_MISSING = "the embedded refiner needs diffusers (pip install diffusers)"
_LDM_UNET_PREFIX = "model.diffusion_model."  # what diffusers' single-file converter expects in front of UNet keys

# UNet configs from the tensor shapes of an ldm-named state dict (docs/model-files.md "Configs from tensor shapes").
SD1_NUM_HEADS = 8  # SD1's v1-inference.yaml: num_heads 8 at every level (diffusers calls it attention_head_dim)
SDXL_HEAD_CHANNELS = 64  # SDXL's sd_xl_base.yaml: num_head_channels 64
SDXL_TIME_ID_DIM = 256  # SDXL: addition_time_embed_dim; label_emb's input is pooled text + 6 x 256
SDXL_ADM_KEY = "label_emb.0.0.weight"
EXPECTED_UNET = "an SD1 or SDXL UNet with ldm names (input_blocks.*, middle_block.*, output_blocks.*)"

_BLOCK_INDEX = re.compile(r"^input_blocks\.(\d+)\.")
_TRANSFORMER_INDEX = re.compile(r"^middle_block\.1\.transformer_blocks\.(\d+)\.")


def infer_unet_config(state_dict: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> dict:
    """Keyword arguments for ``diffusers.UNet2DConditionModel`` (``convert_ldm_unet_checkpoint`` reads them too)."""
    keys = set(state_dict.keys())
    require = partial(required_shape, state_dict, source=source, expected=EXPECTED_UNET, what="the UNet")
    in_channels = require("input_blocks.0.0.weight")[1]
    out_channels = require("out.2.weight")[0]
    linear_projection = len(require("middle_block.1.proj_in.weight")) == 2  # SD1: 1x1 convolutions; SDXL: linear
    input_block_count = 1 + max(int(m.group(1)) for m in map(_BLOCK_INDEX.match, keys) if m)
    downsample_count = sum(f"input_blocks.{i}.0.op.weight" in keys for i in range(input_block_count))
    levels = downsample_count + 1
    num_res_blocks, remainder = divmod(input_block_count - 1 - downsample_count, levels)
    if num_res_blocks < 1 or remainder:
        raise ModelFileError(source, f"{input_block_count} input blocks do not form a UNet", EXPECTED_UNET)

    middle_depth = 1 + max(int(m.group(1)) for m in map(_TRANSFORMER_INDEX.match, keys) if m)
    block_out_channels, attention_levels, level_depths = [], [], []
    for level in range(levels):  # level 0 = full resolution
        first_block = 1 + level * (num_res_blocks + 1)
        block_out_channels.append(require(f"input_blocks.{first_block}.0.out_layers.3.weight")[0])
        blocks = re.compile(rf"^input_blocks\.{first_block}\.1\.transformer_blocks\.(\d+)\.")
        found = [int(m.group(1)) for m in map(blocks.match, keys) if m]
        if found:
            attention_levels.append(level)
        level_depths.append(1 + max(found) if found else middle_depth)

    sdxl = SDXL_ADM_KEY in keys
    heads = [max(1, channels // SDXL_HEAD_CHANNELS) if sdxl else SD1_NUM_HEADS for channels in block_out_channels]
    config = {
        "sample_size": 64,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "down_block_types": ["CrossAttnDownBlock2D" if level in attention_levels else "DownBlock2D"
                             for level in range(levels)],
        "up_block_types": ["CrossAttnUpBlock2D" if level in attention_levels else "UpBlock2D"
                           for level in reversed(range(levels))],
        "block_out_channels": block_out_channels,
        "layers_per_block": num_res_blocks,
        "cross_attention_dim": require("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1],
        "attention_head_dim": heads[0] if len(set(heads)) == 1 else heads,  # diffusers' name for the head count
        "transformer_layers_per_block": level_depths if len(set(level_depths)) > 1 else middle_depth,
        "use_linear_projection": linear_projection,
    }
    if sdxl:
        config.update(addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_ID_DIM,
                      projection_class_embeddings_input_dim=require(SDXL_ADM_KEY)[1])
    return config


def require_diffusers(module: str = "diffusers"):
    """Imports ``module`` of diffusers, or raises the one-line error that tells the user what to install."""
    try:
        importlib.import_module("diffusers")  # first, so that a hidden/missing package is noticed before submodules
        return importlib.import_module(module)
    except ImportError as exc:
        raise TinyBreakerError(f"{DIFFUSERS_MISSING}; importing it failed: {exc}") from exc


def build_with_weights(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor], *, device,
                       dtype: torch.dtype, source: str, expected: str, what: str = "the model") -> torch.nn.Module:
    """Builds the module on the meta device (no memory, no random init) and adopts ``tensors`` cast to device/dtype,
    emptying ``tensors`` so that each source tensor can be freed as soon as its cast copy exists. Every parameter and
    persistent buffer must be supplied with the right shape; extra tensors are an error too, named with ``what``.
    Non-persistent buffers (in no state dict) stay on the meta device."""
    with torch.device("meta"):
        module = build()
    wanted = module.state_dict()
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise ModelFileError(source, f"{what} is missing '{missing[0]}' ({len(missing)} tensors missing)", expected)
    unexpected = sorted(key for key in tensors if key not in wanted)
    if unexpected:
        raise ModelFileError(source, f"{what} has {len(unexpected)} unexpected tensors, e.g. '{unexpected[0]}'",
                             expected)
    adopted = {}
    for key, reference in wanted.items():
        tensor = tensors.pop(key)
        if tuple(tensor.shape) != tuple(reference.shape):
            raise ModelFileError(source, f"{what} '{key}' has shape {list(tensor.shape)}, "
                                         f"the model needs {list(reference.shape)}", expected)
        adopted[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
    module.load_state_dict(adopted, strict=True, assign=True)
    return module.eval().requires_grad_(False)


class SD1Refiner(torch.nn.Module):
    """An eps-predicting SD1 UNet on model-space latents; ``eps`` is the ``eps_fn(x_in, timestep, context)`` of
    ``sampling.denoisers.EpsDenoiser`` (with ``sd1_sigmas()``)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], *, device, dtype: torch.dtype) -> "SD1Refiner":
        """An ldm-named SD1 or SDXL UNet (keys without any prefix) as a ``diffusers.UNet2DConditionModel``."""
        unet_class = require_diffusers("diffusers").UNet2DConditionModel  # before reading any tensor
        single_file = require_diffusers("diffusers.loaders.single_file_utils")
        source = source_name(state_dict)
        config = infer_unet_config(state_dict, source=source)
        # Same converter in diffusers 0.31.0, 0.32.2 and 0.42.1 (checked); it reads only 'layers_per_block' and the
        # optional class/addition embedding entries of the config (SDXL's label_emb -> add_embedding).
        tensors = single_file.convert_ldm_unet_checkpoint({_LDM_UNET_PREFIX + key: state_dict[key]
                                                           for key in state_dict.keys()}, config)
        return cls(build_with_weights(lambda: unet_class(**config), tensors, device=device, dtype=dtype,
                                      source=source, expected=EXPECTED_UNET))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def conditioning(self, x_scaled: torch.Tensor, context: torch.Tensor) -> dict:
        """The UNet's keyword arguments for a context [B, L, C] on the UNet's device and dtype."""
        return {"encoder_hidden_states": context}

    @torch.no_grad()
    def eps(self, x_scaled: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted noise for ``x_scaled`` (= x * c_in) at integer-valued ``timestep`` [B], in the dtype of
        ``x_scaled``; ``context`` is [B or 1, L, C] text conditioning."""
        if context.shape[0] == 1 and x_scaled.shape[0] > 1:
            context = context.expand(x_scaled.shape[0], -1, -1)
        timestep = torch.as_tensor(timestep, device=self.device).reshape(-1).float()
        out = self.unet(x_scaled.to(self.device, self.dtype), timestep, return_dict=False,
                        **self.conditioning(x_scaled, context.to(self.device, self.dtype)))[0]
        return out.to(x_scaled.dtype)

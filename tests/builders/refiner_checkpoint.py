"""An SD1 checkpoint in the ldm single-file layout a WebUI loads, made from a TinyBreaker file's embedded refiner:

    python tests/builders/refiner_checkpoint.py <tinybreaker prototype0/1 .safetensors> <out .safetensors>

| checkpoint (what A1111, Forge, reForge load)     | TinyBreaker file                                         |
|--------------------------------------------------|----------------------------------------------------------|
| ``model.diffusion_model.*``                       | ``refiner.diffusion_model.*`` (ldm names on both sides)  |
| ``cond_stage_model.transformer.text_model.*``     | ``refiner.conditioner.text_model.*`` (HF CLIPTextModel)  |
| ``first_stage_model.decoder.*``, ``post_quant_conv.*`` | the high-quality KL decoder: prototype1 ``first_stage_model.``, prototype0 ``first_stage_hqmodel.`` |
| ``first_stage_model.encoder.*``, ``quant_conv.*`` | none: seeded random, shaped like the decoder             |

The file has no KL encoder (the reference encodes images with its tiny VAE), but the hosts build and load a whole
KL VAE. txt2img never encodes, so the encoder's values do not touch the live comparison; img2img, inpainting or a
Hires fix with an image upscaler on this checkpoint would encode with random weights. Tensors keep their dtype; only
safetensors are read and written.
"""

from __future__ import annotations

import os
import sys

import torch
from safetensors import safe_open

if __package__ in (None, ""):  # run as a script: make `builders` and `tinybreaker_ext` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from builders.common import save_safetensors  # noqa: E402
from builders.sd1 import kl_encoder_state_dict  # noqa: E402
from tinybreaker_ext.files.classify import (FIRST_STAGE_HQ_PREFIX, FIRST_STAGE_PREFIX, REFINER_CLIP_PREFIX,  # noqa: E402
                                            REFINER_UNET_PREFIX, FileKind, classify)
from tinybreaker_ext.models.kl_decoder import infer_kl_decoder_config  # noqa: E402

SD1_UNET_PREFIX = "model.diffusion_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD1_VAE_PREFIX = "first_stage_model."
ENCODER_SEED = 4


def refiner_checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The SD1 checkpoint's tensors, read from the TinyBreaker file at ``path``."""
    kind = classify(path).kind
    if kind not in (FileKind.TINYBREAKER_PROTOTYPE0, FileKind.TINYBREAKER_PROTOTYPE1):
        raise ValueError(f"{path}: a TinyBreaker prototype0/1 file is needed, this is a {kind.value}")
    decoder_prefix = FIRST_STAGE_HQ_PREFIX if kind == FileKind.TINYBREAKER_PROTOTYPE0 else FIRST_STAGE_PREFIX
    renames = {REFINER_UNET_PREFIX: SD1_UNET_PREFIX, REFINER_CLIP_PREFIX: SD1_CLIP_PREFIX}
    sd: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    with safe_open(os.fspath(path), framework="pt") as source:
        for key in source.keys():
            for old, new in renames.items():
                if key.startswith(old):
                    sd[new + key[len(old):]] = source.get_tensor(key)
            rest = key[len(decoder_prefix):]
            # prototype0's first_stage_model. also holds tiny-VAE halves under encoder./decoder.<i>: keep KL names only
            if key.startswith(decoder_prefix) and (rest.startswith("decoder.") or rest.startswith("post_quant_conv.")):
                decoder[rest] = source.get_tensor(key)
    sd.update({SD1_VAE_PREFIX + key: value for key, value in decoder.items()})
    sd.update({SD1_VAE_PREFIX + key: value for key, value in kl_encoder_like(decoder).items()})
    return sd


def kl_encoder_like(decoder: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A seeded random KL encoder (+ ``quant_conv``) whose shapes match ``decoder`` (ldm names, no prefix)."""
    config = infer_kl_decoder_config(decoder)
    ch = config["block_out_channels"][0]
    return kl_encoder_state_dict(ch=ch, ch_mult=[channels // ch for channels in config["block_out_channels"]],
                                 z=config["in_channels"], num_res_blocks=config["layers_per_block"],
                                 in_ch=config["out_channels"], seed=ENCODER_SEED,
                                 dtype=decoder["post_quant_conv.weight"].dtype)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit(__doc__)
    sd = refiner_checkpoint_state_dict(argv[0])
    save_safetensors(sd, argv[1])
    print(f"{argv[1]}: {len(sd)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Tiny random TinyBreaker model files in the real layouts: a prototype0/1 checkpoint (every prefix of the real
file), an fp8 T5 encoder and the T5/CLIP tokenizers. Used by the pipeline tests, the CLI tests, the benchmarks and
the live tests (run as a script to fill a WebUI's models/TinyBreaker folder):

    python tests/builders/tinybreaker_files.py <folder> [--full-refiner] [--sdxl]

``--sdxl`` also writes ``tinybreaker_sdxl.safetensors``: a TinyBreaker file with a tiny SDXL refiner (docs/model-files.md
"TinyBreaker files with an SDXL refiner"). ``--full-refiner`` also writes ``tinybreaker_prototype1_sd15refiner.safetensors`` (2 GB): the same tiny base parts
with a full-size random SD1.5 refiner (UNet, CLIP-L text model, KL decoder), so that the SD1 checkpoint
``refiner_checkpoint.py`` makes from it loads in a real WebUI (see README, "Live tests").
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

if __package__ in (None, ""):  # run as a script: make `builders` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from builders.common import prefixed, save_safetensors  # noqa: E402
from builders.pixart import pixart_state_dict  # noqa: E402
from builders.sd1 import CLIP_L, SD15_UNET, SD_VAE_DECODER, clip_text_state_dict, kl_decoder_state_dict  # noqa: E402
from builders.sd1 import sd1_unet_ldm_state_dict  # noqa: E402
from builders.sd1 import write_tiny_clip_tokenizer  # noqa: E402
from builders.t5 import t5_state_dict, train_tiny_t5_tokenizer  # noqa: E402
from builders.taesd import fp16_scalar, taesd_decoder_state_dict, taesd_encoder_state_dict  # noqa: E402
from builders.taesd import transcoder_state_dict  # noqa: E402

TEXT_WIDTH = 32  # tiny T5 d_model = PixArt caption width
CLIP_WIDTH = 32  # tiny CLIP hidden = UNet cross-attention width
TAESD_HIDDEN = 16  # the real TAESD has 64; 16 keeps tests fast
FP16 = torch.float16


FULL_REFINER_NAME = "tinybreaker_prototype1_sd15refiner.safetensors"
SDXL_FILE_NAME = "tinybreaker_sdxl.safetensors"


def tinybreaker_state_dict(prototype: int = 1, *, seed: int = 0, pixart_layout: str = "native",
                           full_refiner: bool = False) -> dict[str, torch.Tensor]:
    """The whole checkpoint, fp16 like the real file (scalars included). ``full_refiner``: the SD1 refiner (UNet,
    CLIP, KL decoder) at SD1.5's real size (needs diffusers), the base parts tiny as always."""
    unet, clip, kl_decoder = (_full_refiner if full_refiner else _tiny_refiner)(seed)
    sd: dict[str, torch.Tensor] = {}
    sd.update(prefixed(pixart_state_dict(caption_dim=TEXT_WIDTH, layout=pixart_layout, seed=seed, dtype=FP16),
                       "base.diffusion_model."))
    sd.update(prefixed(unet, "refiner.diffusion_model."))
    sd.update(prefixed(clip, "refiner.conditioner."))
    sd.update(_tiny_vae("first_stage_model.encoder.", taesd_encoder_state_dict(seed + 3, hidden_channels=TAESD_HIDDEN,
                                                                               dtype=FP16), 0.13025))
    sd.update(transcoder_state_dict(seed + 4, prefix="transcoder.", hidden_channels=TAESD_HIDDEN))
    sd1_decoder = taesd_decoder_state_dict(seed + 6, hidden_channels=TAESD_HIDDEN, dtype=FP16)
    if prototype == 0:
        sd.update(_tiny_vae("first_stage_model.decoder.", sd1_decoder, 0.18215))
        sd.update(prefixed(kl_decoder, "first_stage_hqmodel."))
    else:
        sd.update(prefixed(kl_decoder, "first_stage_model."))
        sd.update(_tiny_vae("refiner.first_stage_model.encoder.",
                            taesd_encoder_state_dict(seed + 7, hidden_channels=TAESD_HIDDEN, dtype=FP16), 0.18215))
        sd.update(_tiny_vae("refiner.first_stage_model.decoder.", sd1_decoder, 0.18215))
    return {key: value.to(FP16) if value.is_floating_point() else value for key, value in sd.items()}


def tinybreaker_sdxl_state_dict(*, seed: int = 0, pixart_layout: str = "native") -> dict[str, torch.Tensor]:
    """A TinyBreaker file with a tiny SDXL refiner: the PixArt base, the SDXL UNet (ldm names) and both SDXL text
    encoders as in an SDXL single file, the TAESDXL encoder + an (SDXL-shaped) KL decoder as the main VAE, and no
    transcoder (PixArt's latent is SDXL's already). fp16, like maketb's files."""
    from builders.sdxl import sdxl_conditioner_state_dict, sdxl_unet_ldm_state_dict

    sd: dict[str, torch.Tensor] = {}
    sd.update(prefixed(pixart_state_dict(caption_dim=TEXT_WIDTH, layout=pixart_layout, seed=seed, dtype=FP16),
                       "base.diffusion_model."))
    sd.update(prefixed(sdxl_unet_ldm_state_dict(seed=seed + 1, dtype=FP16), "refiner.diffusion_model."))
    sd.update(prefixed(sdxl_conditioner_state_dict(seed=seed + 2, dtype=FP16), "refiner.conditioner."))
    sd.update(_tiny_vae("first_stage_model.encoder.", taesd_encoder_state_dict(seed + 3, hidden_channels=TAESD_HIDDEN,
                                                                               dtype=FP16), 0.13025))
    sd.update(prefixed(kl_decoder_state_dict(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, seed=seed + 5,
                                             dtype=FP16), "first_stage_model."))
    return {key: value.to(FP16) if value.is_floating_point() else value for key, value in sd.items()}


def _tiny_refiner(seed: int) -> tuple[dict[str, torch.Tensor], ...]:
    """UNet, CLIP text model and KL decoder of the tiny refiner (CLIP_WIDTH wide)."""
    return (_tiny_refiner_unet(seed + 1),
            clip_text_state_dict(hidden=CLIP_WIDTH, seed=seed + 2, dtype=FP16),
            kl_decoder_state_dict(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, seed=seed + 5, dtype=FP16))


def _full_refiner(seed: int) -> tuple[dict[str, torch.Tensor], ...]:
    """SD1.5's real shapes; diffusers' random init (the UNet's output convs are not zero, unlike ldm's)."""
    return (sd1_unet_ldm_state_dict(**SD15_UNET, seed=seed + 1, dtype=FP16),
            clip_text_state_dict(**CLIP_L, seed=seed + 2, dtype=FP16),
            kl_decoder_state_dict(**SD_VAE_DECODER, seed=seed + 5, dtype=FP16))


def _tiny_refiner_unet(seed: int) -> dict[str, torch.Tensor]:
    """The tiny SD1 UNet is built with diffusers (then renamed to ldm keys). Where diffusers is absent (A1111's
    stack) only the signature keys are written: enough for every stage except the embedded refiner, whose tests
    skip there."""
    if importlib.util.find_spec("diffusers") is not None:
        return sd1_unet_ldm_state_dict(context_dim=CLIP_WIDTH, seed=seed, dtype=FP16)
    generator = torch.Generator().manual_seed(seed)
    return {"input_blocks.0.0.weight": torch.randn(32, 4, 3, 3, generator=generator).to(FP16),
            "time_embed.0.weight": torch.randn(128, 32, generator=generator).to(FP16),
            "out.2.weight": torch.randn(4, 32, 3, 3, generator=generator).to(FP16)}


def tinybreaker_metadata(prototype: int | str, **generation_defaults: str) -> dict[str, str]:
    """maketb's modelspec fields; ``generation_defaults`` are extra keys such as ``denoising.refiner.steps`` (the
    ``.conf`` entries maketb merges in), given with '__' for '.': ``denoising__refiner__steps="20"``."""
    return {"modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": "TinyBreaker",
            "modelspec.implementation": "reference", "modelspec.title": f"TinyBreaker prototype{prototype}",
            "modelspec.resolution": "1024x1024",
            **{key.replace("__", "."): str(value) for key, value in generation_defaults.items()}}


def write_tiny_model_folder(folder: str | os.PathLike, *, prototypes: tuple[int, ...] = (1,), seed: int = 0,
                            t5_dtype: torch.dtype = torch.float8_e4m3fn, full_refiner: bool = False,
                            sdxl: bool = False) -> dict[str, str]:
    """Writes tinybreaker_prototypeN.safetensors, t5xxl_fp8_e4m3fn.safetensors (tiny), t5_tokenizer/ and
    clip_tokenizer/ into ``folder`` (and FULL_REFINER_NAME with ``full_refiner``); returns their paths by role."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    paths: dict[str, str] = {}
    for prototype in prototypes:
        paths[f"checkpoint{prototype}"] = save_safetensors(
            tinybreaker_state_dict(prototype, seed=seed), os.path.join(folder, f"tinybreaker_prototype{prototype}.safetensors"),
            tinybreaker_metadata(prototype))
    paths["checkpoint"] = paths[f"checkpoint{prototypes[0]}"]
    if full_refiner:
        paths["checkpoint_full_refiner"] = save_safetensors(
            tinybreaker_state_dict(1, seed=seed, full_refiner=True), os.path.join(folder, FULL_REFINER_NAME),
            tinybreaker_metadata(1))
    if sdxl:
        paths["checkpoint_sdxl"] = save_safetensors(tinybreaker_sdxl_state_dict(seed=seed),
                                                    os.path.join(folder, SDXL_FILE_NAME), tinybreaker_metadata("_sdxl"))
    paths["t5"] = save_safetensors(t5_state_dict(d_model=TEXT_WIDTH, dtype=t5_dtype, seed=seed + 10),
                                   os.path.join(folder, "t5xxl_fp8_e4m3fn.safetensors"))
    paths["t5_tokenizer"] = train_tiny_t5_tokenizer(os.path.join(folder, "t5_tokenizer"))
    paths["clip_tokenizer"] = write_tiny_clip_tokenizer(os.path.join(folder, "clip_tokenizer"))
    return paths


def _tiny_vae(prefix: str, state_dict: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    result = prefixed(state_dict, prefix)
    result[prefix + "vae_scale"] = fp16_scalar(scale)
    result[prefix + "vae_shift"] = fp16_scalar(0.0)
    return result


if __name__ == "__main__":
    if len(sys.argv) < 2 or not set(sys.argv[2:]) <= {"--full-refiner", "--sdxl"}:
        sys.exit(__doc__)
    for role, path in write_tiny_model_folder(sys.argv[1], prototypes=(1, 0), full_refiner="--full-refiner" in sys.argv,
                                              sdxl="--sdxl" in sys.argv).items():
        print(f"{role}: {path}")

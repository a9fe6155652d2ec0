"""A real WebUI's `tinybreaker` refine gives the command line's image for the same inputs and SD1 weights.

The host refines with an SD1 checkpoint converted from the TinyBreaker file's embedded refiner; the command line
refines with the embedded refiner itself. Both run the same base, transcoder, refine sampler, sigma window and noise,
so what is left is the host's own arithmetic: its text encoder's emphasis rule, A1111's fractional timesteps, its
VAE and its 8-bit conversion. Skipped unless these are set (README, "Live tests"):

- ``TINYBREAKER_LIVE_URL``: the WebUI, started with ``--api`` (CPU and fp32, e.g. A1111 ``--use-cpu all --no-half``,
  Forge ``--always-cpu``), best with the converted checkpoint loaded at start (``--ckpt``);
- ``TINYBREAKER_LIVE_CHECKPOINT``: the TinyBreaker file with a full-size refiner, inside the host's TinyBreaker
  models folder (``tests/builders/tinybreaker_files.py <webui>/models/TinyBreaker --full-refiner``); the command
  line uses that folder's T5 encoder and tokenizer, as the host does;
- ``TINYBREAKER_LIVE_CLIP_TOKENIZER``: the CLIP-L tokenizer folder (vocab.json, merges.txt) the host's text encoder
  uses (A1111: the hub cache of openai/clip-vit-large-patch14; Forge ships one);
- the converted checkpoint (``tests/builders/refiner_checkpoint.py``) in the host's models/Stable-diffusion, named
  ``<checkpoint stem>_sd1.safetensors`` or as ``TINYBREAKER_LIVE_SD1_CHECKPOINT`` says.

Each case costs one host generation and one command-line generation at 256x256 (minutes on a CPU).
"""

from __future__ import annotations

import base64
import io
import os

import pytest

from live.test_live_webui import BASE_URL, call

CHECKPOINT = os.environ.get("TINYBREAKER_LIVE_CHECKPOINT", "")
CLIP_TOKENIZER = os.environ.get("TINYBREAKER_LIVE_CLIP_TOKENIZER", "")

pytestmark = [pytest.mark.live, pytest.mark.slow,
              pytest.mark.skipif(not (BASE_URL and CHECKPOINT and CLIP_TOKENIZER),
                                 reason="needs TINYBREAKER_LIVE_URL, TINYBREAKER_LIVE_CHECKPOINT and "
                                        "TINYBREAKER_LIVE_CLIP_TOKENIZER")]

WIDTH = HEIGHT = 256
SEED = 7
PROMPT, NEGATIVE = "a red cube on a table", "blurry"
# PSNR floor (dB). Measured on A1111 1.10.1 (44480451, CPU, fp32) with extension 649f80b, 256x256: the `tinybreaker`
# refine gave 44.12 dB (PHOTO) and 43.87 dB (PAINTING), the host's own sampler (`webui` refine) 10.73 dB. The host
# truncates to 8 bits where the command line rounds (alone about 51 dB); the rest is the host's own arithmetic
# (emphasis rule, A1111's fractional timesteps, its VAE call) on random SD1.5 weights, which amplify small
# differences. A refine that runs other numbers than the plan's falls far below the floor.
PSNR_FLOOR = 40.0
STYLES = ["PHOTO", "PAINTING"]  # deis / ddim_uniform (whole timesteps); lms / normal (fractional on A1111)


def png_array(data: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype("float64")


def psnr(a, b) -> float:
    import numpy as np

    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255 ** 2 / mse))


def sd1_checkpoint_title() -> str:
    name = os.environ.get("TINYBREAKER_LIVE_SD1_CHECKPOINT") or \
        os.path.splitext(os.path.basename(CHECKPOINT))[0] + "_sd1.safetensors"
    status, models = call("GET", "/sdapi/v1/sd-models")
    assert status == 200, models
    for model in models:
        if os.path.basename(model["filename"]) == name:
            return model["title"]
    pytest.fail(f"the host has no SD1 checkpoint {name!r}: convert the TinyBreaker file with "
                "tests/builders/refiner_checkpoint.py into its models/Stable-diffusion (see the module docstring)")


def host_image(style: str, refine_sampler: str):
    args = {"enabled": True, "style": style, "refine_sampler": refine_sampler,
            "checkpoint": os.path.basename(CHECKPOINT), "t5_file": os.path.basename(cli_files().t5)}
    body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED, "width": WIDTH, "height": HEIGHT,
            "steps": 20, "sampler_name": "Euler", "cfg_scale": 7,
            "override_settings": {"sd_model_checkpoint": sd1_checkpoint_title()},
            "alwayson_scripts": {"TinyBreaker": {"args": [args]}}}
    status, result = call("POST", "/sdapi/v1/txt2img", body)
    assert status == 200, result
    return png_array(base64.b64decode(result["images"][0].split(",", 1)[-1]))


def cli_files():
    """The checkpoint, the T5 encoder the folder gives first (passed to the host by name, so both use it) and the
    CLIP tokenizer; the T5 tokenizer is searched in the folder by both."""
    from tinybreaker_ext.model_files import resolve_cli_files

    return resolve_cli_files(os.path.dirname(CHECKPOINT), checkpoint=CHECKPOINT, clip_tokenizer=CLIP_TOKENIZER)


@pytest.fixture(scope="module")
def cli_image(tmp_path_factory):
    """The command line's image for a style (``python -m tinybreaker_ext``'s own entry point, in-process)."""
    pytest.importorskip("diffusers")  # the command line's embedded refiner
    from tinybreaker_ext.cli import main

    folder, images = tmp_path_factory.mktemp("cli"), {}

    def image(style: str):
        if style not in images:
            files, out = cli_files(), folder / f"{style}.png"
            argv = [PROMPT, "--negative", NEGATIVE, "--seed", str(SEED), "--width", str(WIDTH), "--height",
                    str(HEIGHT), "--style", style, "--decoder", "high_quality", "--device", "cpu", "--dtype", "fp32",
                    "--models-dir", os.path.dirname(CHECKPOINT), "--checkpoint", files.checkpoint, "--t5", files.t5,
                    "--clip-tokenizer", files.clip_tokenizer, "-o", str(out)]
            assert main(argv) == 0
            images[style] = png_array(out.read_bytes())
        return images[style]

    return image


@pytest.mark.parametrize("style", STYLES)
def test_the_tinybreaker_refine_gives_the_command_lines_image(cli_image, style):
    value = psnr(host_image(style, "tinybreaker"), cli_image(style))
    assert value >= PSNR_FLOOR, f"{style}: PSNR {value:.2f} dB < {PSNR_FLOOR} dB"


def test_the_hosts_own_sampler_is_told_apart(cli_image):
    """A control: the `webui` refine (the host's sampler and schedule) is measurably not the command line's image,
    so the floor above separates the two refines."""
    value = psnr(host_image("PHOTO", "webui"), cli_image("PHOTO"))
    assert value < PSNR_FLOOR, f"PSNR {value:.2f} dB"

"""The hub model files a TinyBreaker user needs, with the role each fills and where it goes by default (the
tokenizers are the TokenizerKinds of models/t5_tokenizer.py and models/clip_tokenizer.py).

``subfolder`` is relative to the host's models folder (``models/`` in A1111/Forge/reForge). The T5 encoder goes to
``text_encoder`` because Forge already keeps its Flux T5 there, so one copy serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tinybreaker_ext.files.download import download_hub_file


@dataclass(frozen=True)
class KnownFile:
    key: str
    role: str             # "checkpoint" or "t5"
    repo_id: str
    filename: str         # path inside the repo
    subfolder: str        # default destination, relative to the host's models folder
    description: str
    approx_bytes: int = 0

    @property
    def local_name(self) -> str:
        return os.path.basename(self.filename)

    def destination(self, models_dir: str | os.PathLike) -> str:
        return os.path.join(os.fspath(models_dir), self.subfolder)


TINYBREAKER_DIR = "TinyBreaker"
T5_DIR = "text_encoder"

KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile("tinybreaker_prototype1", "checkpoint", "martin-rizzo/TinyBreaker.prototype1",
              "tinybreaker_prototype1.safetensors", TINYBREAKER_DIR,
              "TinyBreaker prototype1 (PixArt-Sigma base + Photon SD1.5 refiner + tiny VAEs)", 3_000_000_000),
    KnownFile("tinybreaker_prototype0", "checkpoint", "martin-rizzo/TinyBreaker.prototype0",
              "tinybreaker_prototype0.safetensors", TINYBREAKER_DIR,
              "TinyBreaker prototype0 (older build; no Tiny Upscaler)", 3_000_000_000),
    KnownFile("t5xxl_fp8_e4m3fn", "t5", "Comfy-Org/stable-diffusion-3.5-fp8",
              "text_encoders/t5xxl_fp8_e4m3fn.safetensors", T5_DIR,
              "T5-XXL v1.1 encoder, plain fp8 e4m3fn cast", 4_890_000_000),
)


def known_file(key: str) -> KnownFile:
    for item in KNOWN_FILES:
        if item.key == key:
            return item
    raise KeyError(f"unknown file key {key!r}; known: {', '.join(item.key for item in KNOWN_FILES)}")


def download_known_file(item: KnownFile, models_dir: str | os.PathLike, *, progress=True,
                        endpoint: str | None = None) -> str:
    """Downloads ``item`` into its default subfolder of ``models_dir`` (resumable, verified); returns the path."""
    return download_hub_file(item.repo_id, item.filename, item.destination(models_dir), progress=progress,
                             endpoint=endpoint)

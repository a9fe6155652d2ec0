"""The hub files a TinyBreaker user needs, with the role each fills and where it goes by default.

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
    role: str             # "checkpoint", "t5", "tokenizer_t5", "tokenizer_clip"
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
# the same folders the tokenizer loaders (models/t5_tokenizer.py, models/clip_tokenizer.py) download into
T5_TOKENIZER_DIR = os.path.join("TinyBreaker", "t5_tokenizer")
CLIP_TOKENIZER_DIR = os.path.join("TinyBreaker", "clip-vit-large-patch14")

# google/t5-v1_1-xxl ships only spiece.model (the fast tokenizer would need sentencepiece to convert it);
# google-t5/t5-base has a tokenizer.json of the same 32k SentencePiece vocabulary (+100 extra ids) T5 v1.1 uses.
_T5_TOKENIZER_REPO = "google-t5/t5-base"
_CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"

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
    KnownFile("t5_tokenizer:tokenizer.json", "tokenizer_t5", _T5_TOKENIZER_REPO, "tokenizer.json", T5_TOKENIZER_DIR,
              "T5 tokenizer (fast tokenizer file)"),
    *(KnownFile(f"clip_tokenizer:{name}", "tokenizer_clip", _CLIP_TOKENIZER_REPO, name, CLIP_TOKENIZER_DIR,
                f"CLIP ViT-L/14 tokenizer file {name}")
      for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")),
)


def known_files(role: str | None = None) -> list[KnownFile]:
    """The registry, optionally only the files of one role."""
    return [item for item in KNOWN_FILES if role is None or item.role == role]


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

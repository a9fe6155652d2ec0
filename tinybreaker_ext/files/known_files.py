"""The hub model files a TinyBreaker user needs (tokenizers: models/t5_tokenizer.py, models/clip_tokenizer.py).

``subfolder`` is relative to the host's models folder; the file keeps its path inside the repo below it, as
huggingface_hub writes it. The T5 encoder goes to ``text_encoder``: Forge keeps its Flux T5 there, so one copy serves
both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownFile:
    role: str             # "checkpoint" or "t5"
    repo_id: str
    filename: str         # path inside the repo
    subfolder: str        # default destination, relative to the models folder

    def destination(self, models_dir: str | os.PathLike) -> str:
        return os.path.join(os.fspath(models_dir), self.subfolder)


TINYBREAKER_DIR = "TinyBreaker"
T5_DIR = "text_encoder"

# One file per role: what the command line's --download fetches when none is found.
KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile("checkpoint", "martin-rizzo/TinyBreaker.prototype1", "tinybreaker_prototype1.safetensors",
              TINYBREAKER_DIR),
    KnownFile("t5", "Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/t5xxl_fp8_e4m3fn.safetensors", T5_DIR),
)

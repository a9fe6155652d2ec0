"""Finds and loads the SD1 CLIP tokenizer (``vocab.json`` + ``merges.txt`` of openai/clip-vit-large-patch14).

Search order: the user's path -> our models folders -> copies the host already has (Forge/reForge ship one in-tree)
-> the Hugging Face cache (where A1111 keeps one) -> download from the hub into the first models folder.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from ..files.tokenizer_search import TokenizerKind, find_tokenizer

CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"
CLIP_TOKENIZER_FILES = ("vocab.json", "merges.txt")
CLIP_TOKENIZER_DIRNAME = "clip_tokenizer"  # where a download goes, inside the first models folder

# Relative to the WebUI root: Forge's SD1.5 tokenizer, then reForge's (and ComfyUI's) in-tree copy.
HOST_TOKENIZER_SUBDIRS = (
    "backend/huggingface/runwayml/stable-diffusion-v1-5/tokenizer",
    "ldm_patched/modules/sd1_tokenizer",
    "comfy/sd1_tokenizer",
)

DownloadFn = Callable[..., str]


def is_clip_tokenizer_dir(path: str | os.PathLike) -> bool:
    return all(os.path.isfile(os.path.join(path, name)) for name in CLIP_TOKENIZER_FILES)


def host_tokenizer_dirs(host_root: str | os.PathLike) -> list[str]:
    """Where a WebUI keeps an SD1 CLIP tokenizer (existing or not); pass the result as ``host_dirs``."""
    return [os.path.join(os.fspath(host_root), *sub.split("/")) for sub in HOST_TOKENIZER_SUBDIRS]


CLIP_TOKENIZER = TokenizerKind(
    what="SD1 CLIP tokenizer", folder_name=CLIP_TOKENIZER_DIRNAME, repo_id=CLIP_TOKENIZER_REPO,
    filenames=CLIP_TOKENIZER_FILES, is_valid=lambda folder: is_clip_tokenizer_dir(folder),
    user_path_hint="the folder must hold vocab.json and merges.txt",
    hub_cache_folders=(CLIP_TOKENIZER_REPO, "runwayml/stable-diffusion-v1-5/tokenizer",
                       "stable-diffusion-v1-5/stable-diffusion-v1-5/tokenizer"))


def find_clip_tokenizer(user_path: str | os.PathLike | None = None, models_dirs: Iterable[str | os.PathLike] = (),
                        host_dirs: Iterable[str | os.PathLike] = (), *, hub_cache: str | None = None,
                        allow_download: bool = True, download: DownloadFn | None = None,
                        download_dir: str | os.PathLike | None = None) -> str:
    """The folder holding ``vocab.json`` and ``merges.txt`` (same rules as ``find_t5_tokenizer``).

    ``user_path`` (a folder, or a file inside one) must be valid when given. Then ``models_dirs`` (each folder, its
    ``clip_tokenizer`` child, its other children), ``host_dirs`` (see ``host_tokenizer_dirs``) and the hub cache
    (``hub_cache``, default: this process's) are searched. Otherwise, if allowed, both files are downloaded from
    ``openai/clip-vit-large-patch14`` into ``download_dir`` (default ``<first models dir>/clip_tokenizer``) with
    ``download`` (default ``tinybreaker_ext.files.download.download_hub_file``).
    """
    return find_tokenizer(CLIP_TOKENIZER, user_path, models_dirs, host_dirs, hub_cache=hub_cache,
                          allow_download=allow_download, download=download, download_dir=download_dir)


def load_clip_tokenizer(directory: str | os.PathLike):
    """``transformers.CLIPTokenizerFast`` from a folder with vocab.json + merges.txt.

    The fast tokenizer splits text the same way on transformers 4.30 to 5.x, and like the slow one of 4.46+ that
    ComfyUI runs; the slow one of 4.30 (A1111) without ftfy also splits punctuation runs and strips accents.
    """
    from transformers import CLIPTokenizerFast

    tokenizer = CLIPTokenizerFast.from_pretrained(os.fspath(directory))
    tokenizer.model_max_length = 1 << 30  # prompts are chunked by us; silence the "longer than 77" warning
    return tokenizer

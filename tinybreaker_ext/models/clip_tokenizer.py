"""Finds and loads the SD1 CLIP tokenizer for the command line's SD1 refine: the user's path -> our models folders ->
the Hugging Face cache (where A1111 keeps one) -> a download from the hub into the first models folder."""

from __future__ import annotations

import os

from ..files.tokenizer_search import TokenizerKind, find_tokenizer

CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"
CLIP_TOKENIZER_FILES = ("vocab.json", "merges.txt")
CLIP_TOKENIZER_DIRNAME = "clip_tokenizer"  # where a download goes, inside the first models folder

CLIP_TOKENIZER = TokenizerKind(
    what="SD1 CLIP tokenizer", folder_name=CLIP_TOKENIZER_DIRNAME, repo_id=CLIP_TOKENIZER_REPO,
    filenames=CLIP_TOKENIZER_FILES,
    is_valid=lambda folder: all(os.path.isfile(os.path.join(folder, name)) for name in CLIP_TOKENIZER_FILES),
    user_path_hint="the folder must hold vocab.json and merges.txt",
    hub_cache_folders=(CLIP_TOKENIZER_REPO, "runwayml/stable-diffusion-v1-5/tokenizer",
                       "stable-diffusion-v1-5/stable-diffusion-v1-5/tokenizer"))


def find_clip_tokenizer(user_path: str | os.PathLike | None = None, models_dirs=(), host_dirs=(), **options) -> str:
    """The folder holding ``vocab.json`` and ``merges.txt`` (``tokenizer_search.find_tokenizer``)."""
    return find_tokenizer(CLIP_TOKENIZER, user_path, models_dirs, host_dirs, **options)


def load_clip_tokenizer(directory: str | os.PathLike):
    """``transformers.CLIPTokenizerFast``, which splits text the same way on transformers 4.30 to 5.x, and like the
    slow one of 4.46+ that ComfyUI runs; the slow one of 4.30 (A1111) without ftfy also splits punctuation runs and
    strips accents."""
    from transformers import CLIPTokenizerFast

    tokenizer = CLIPTokenizerFast.from_pretrained(os.fspath(directory))
    tokenizer.model_max_length = 1 << 30  # prompts are chunked by us; silence the "longer than 77" warning
    return tokenizer

"""Which files a standalone generation uses, all resolved and checked before anything is computed: given paths win
(checked by their headers), else the first candidate found under the models folder (by header, not by name), else
— with ``download`` — the public hub file from ``known_files``. The same for the two tokenizers, which are also
looked for in the Hugging Face cache."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .errors import ModelNotFoundError
from .files.known_files import TINYBREAKER_DIR


@dataclass
class ModelFileSet:
    checkpoint: str
    t5: str
    t5_tokenizer: str | None = None
    clip_tokenizer: str | None = None
    tokenizer_search: dict = field(default_factory=dict)
    upscale_model: str | None = None  # a .safetensors upscale model run before the Tiny Upscaler's refine


def resolve_cli_files(models_dir: str, *, checkpoint: str | None = None, t5: str | None = None,
                      t5_tokenizer: str | None = None, clip_tokenizer: str | None = None,
                      download: bool = False, progress: bool = True,
                      status: Callable[[str], None] = lambda line: None) -> ModelFileSet:
    """Every file the command line needs, else a ModelNotFoundError / ModelFileError naming the option or ``--download``
    that helps; ``status`` gets a line before each download, ``progress`` shows a bar while it runs."""
    from .files.download import download_hub_file
    from .models.clip_tokenizer import find_clip_tokenizer
    from .models.t5_tokenizer import find_t5_tokenizer

    def fetch(repo_id: str, filename: str, dest_dir: str) -> str:
        status(f"download: {filename} of {repo_id} into {dest_dir}")
        return download_hub_file(repo_id, filename, dest_dir, progress=progress)

    checkpoint = _model_file("checkpoint", checkpoint, models_dir, fetch if download else None)
    t5 = _model_file("t5", t5, models_dir, fetch if download else None)
    # Tokenizer folders: models/TinyBreaker (the documented place, where a download goes), then models itself.
    search = {"models_dirs": [os.path.join(models_dir, TINYBREAKER_DIR), models_dir], "allow_download": download,
              "download": fetch}
    found_t5 = _with_cli_hint(find_t5_tokenizer, t5_tokenizer, search, "--t5-tokenizer")
    found_clip = _with_cli_hint(find_clip_tokenizer, clip_tokenizer, search, "--clip-tokenizer")
    return ModelFileSet(checkpoint=checkpoint, t5=t5, t5_tokenizer=found_t5, clip_tokenizer=found_clip,
                        tokenizer_search=search)


def _model_file(role: str, given: str | None, models_dir: str, download) -> str:
    """``given`` (checked by its header), else the first file of ``role`` under ``models_dir``, else the hub's through
    ``download`` (or an error if None)."""
    from .files.classify import open_model_file
    from .files.finder import ROLE_KINDS, ROLE_NAMES, ModelFinder
    from .files.known_files import KNOWN_FILES

    if given:
        file, _info = open_model_file(given, ROLE_KINDS[role])
        file.close()
        return given
    found = ModelFinder([models_dir]).candidates(role)
    if found:
        return found[0].path
    known = next(file for file in KNOWN_FILES if file.role == role)
    if not download:
        raise ModelNotFoundError(ROLE_NAMES[role], [os.path.abspath(models_dir)],
                                 hint=f"pass --{role} PATH, or add --download to fetch "
                                      f"{os.path.basename(known.filename)} from {known.repo_id} into "
                                      f"{known.destination(models_dir)}")
    return download(known.repo_id, known.filename, known.destination(models_dir))


def _with_cli_hint(find, user_path: str | None, search: dict, option: str) -> str:
    try:
        return find(user_path, **search)
    except ModelNotFoundError as error:
        if user_path is not None or search["allow_download"]:
            raise
        raise ModelNotFoundError(error.what, error.searched,
                                 f"{error.hint}, pass {option} DIR, or add --download") from None

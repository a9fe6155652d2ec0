"""Which files a standalone generation uses: given paths win, else the first candidate found under the models
folder (by header, not by name), else — with ``download`` — the public hub file from ``known_files``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import ModelNotFoundError


@dataclass
class ModelFileSet:
    checkpoint: str
    t5: str
    t5_tokenizer: str | None = None
    clip_tokenizer: str | None = None
    tokenizer_search: dict = field(default_factory=dict)


def resolve_cli_files(models_dir: str, *, checkpoint: str | None = None, t5: str | None = None,
                      t5_tokenizer: str | None = None, clip_tokenizer: str | None = None,
                      download: bool = False) -> ModelFileSet:
    search = {"models_dirs": [models_dir] if os.path.isdir(models_dir) else [],
              "allow_download": download}
    return ModelFileSet(
        checkpoint=checkpoint or _find_or_download("checkpoint", models_dir, download),
        t5=t5 or _find_or_download("t5", models_dir, download),
        t5_tokenizer=t5_tokenizer,
        clip_tokenizer=clip_tokenizer,
        tokenizer_search=search,
    )


def _find_or_download(role: str, models_dir: str, download: bool) -> str:
    from .files.finder import ModelFinder
    from .files.known_files import KNOWN_FILES

    if os.path.isdir(models_dir):
        from .files.classify import preferred_first

        found = preferred_first(ModelFinder([models_dir]).find(role))
        if found:
            return found[0].path
    known = next(file for file in KNOWN_FILES if file.role == role)
    if not download:
        what = "a TinyBreaker checkpoint" if role == "checkpoint" else "a T5-XXL encoder file"
        raise ModelNotFoundError(what, [os.path.abspath(models_dir)],
                                 hint=f"pass --{'checkpoint' if role == 'checkpoint' else 't5'} PATH, or add "
                                      f"--download to fetch {known.local_name} from {known.repo_id}")
    from .files.download import download_hub_file

    return download_hub_file(known.repo_id, known.filename, known.destination(models_dir), progress=True)

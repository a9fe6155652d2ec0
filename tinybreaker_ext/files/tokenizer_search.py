"""Where a tokenizer folder is found, the same for T5 and CLIP, in the order of docs/model-files.md "T5 tokenizer"."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import ModelFileError, ModelNotFoundError, TinyBreakerError


@dataclass(frozen=True)
class TokenizerKind:
    what: str  # e.g. "T5 tokenizer", used in every message
    folder_name: str  # the preferred child of a models folder, and where a download goes
    repo_id: str
    filenames: tuple[str, ...]  # downloaded into the folder, in this order
    is_valid: Callable[[str], bool]
    user_path_hint: str  # what a valid folder holds
    hub_cache_folders: tuple[str, ...] = ()  # "owner/name[/subfolder]": hub repositories that hold one


def default_hub_cache() -> str:
    """The Hugging Face hub cache as huggingface_hub resolves it, read now (its ``constants`` are fixed at import)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return os.path.expanduser(cache)
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hub_cache_candidates(cache: str, folders: Iterable[str]) -> list[str]:
    """The snapshot folders (the one ``refs/main`` names first) of each "owner/name[/subfolder]" in the cache."""
    candidates = []
    for folder in folders:
        owner, name, *subfolder = folder.split("/")
        repo_dir = os.path.join(cache, f"models--{owner}--{name}")
        snapshots = os.path.join(repo_dir, "snapshots")
        if not os.path.isdir(snapshots):
            continue
        names = sorted(os.listdir(snapshots))
        try:
            with open(os.path.join(repo_dir, "refs", "main"), encoding="utf-8") as ref:
                main = ref.read().strip()
            names.sort(key=lambda snapshot: snapshot != main)
        except OSError:
            pass
        candidates += [os.path.join(snapshots, snapshot, *subfolder) for snapshot in names]
    return candidates


def models_folder_candidates(folder: str, preferred_child: str) -> list[str]:
    """A models folder itself, its ``preferred_child``, then its other direct children (sorted)."""
    if not os.path.isdir(folder):
        return []
    preferred = [folder, os.path.join(folder, preferred_child)]
    children = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    return preferred + [child for child in children if child not in preferred and os.path.isdir(child)]


def find_tokenizer(kind: TokenizerKind, user_path=None, models_dirs: Iterable = (), host_dirs: Iterable = (), *,
                   allow_download: bool = True, download=None) -> str:
    """The folder of a valid ``kind`` tokenizer. ``user_path`` (a folder, or a file inside one) must be valid when
    given. Found nowhere, and if allowed, ``kind.filenames`` are downloaded into ``<first models dir>/<folder_name>``
    with ``download`` (default ``download_hub_file``)."""
    if user_path is not None:
        user_path = os.fspath(user_path)
        folder = os.path.dirname(user_path) if os.path.isfile(user_path) else user_path
        if kind.is_valid(folder):
            return folder
        raise ModelNotFoundError(kind.what, [user_path], kind.user_path_hint)

    models_dirs = [os.fspath(d) for d in models_dirs]
    hub_cache = default_hub_cache()
    places = [(folder, models_folder_candidates(folder, kind.folder_name)) for folder in models_dirs]
    places += [(folder, [folder]) for folder in map(os.fspath, host_dirs)]
    places.append((hub_cache, hub_cache_candidates(hub_cache, kind.hub_cache_folders)))
    searched: list[str] = []
    for place, candidates in places:  # (what a failure lists as searched, the folders to try there)
        searched.append(place)
        for candidate in candidates:
            if kind.is_valid(candidate):
                return candidate

    target = os.path.join(models_dirs[0], kind.folder_name) if models_dirs else None
    where = f"into {target}" if target else f"into a '{kind.folder_name}' folder of your models folder"
    hint = f"put {' and '.join(kind.filenames)} of the hub repository {kind.repo_id} {where}"
    if not allow_download or target is None:
        raise ModelNotFoundError(kind.what, searched, hint)
    if download is None:
        from .download import download_hub_file as download
    try:
        paths = [download(kind.repo_id, filename, target) for filename in kind.filenames]
    except (TinyBreakerError, OSError) as error:
        raise ModelNotFoundError(kind.what, searched + [f"hub {kind.repo_id}"],
                                 f"download failed ({error}); {hint}") from error
    folder = os.path.dirname(os.fspath(paths[0]))
    if not kind.is_valid(folder):
        raise ModelFileError(paths[0], f"downloaded files are not a {kind.what}", kind.user_path_hint)
    return folder

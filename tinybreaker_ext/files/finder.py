"""Lists the model files and tokenizer folders usable for each role, found by reading headers (never names).

Each call to ``find`` walks the search folders again (bounded depth, so it is cheap) and reuses the
classification of files whose (path, size, mtime) did not change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Iterable, Union

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import CHECKPOINT_KINDS, FileKind, ModelFileInfo, classify

ROLE_KINDS: dict[str, frozenset[FileKind]] = {
    "checkpoint": CHECKPOINT_KINDS,
    "t5": frozenset({FileKind.T5_ENCODER}),
    "tiny_vae": frozenset({FileKind.TINY_VAE}),
    "transcoder": frozenset({FileKind.TRANSCODER}),
}
TOKENIZER_ROLE = "tokenizer_t5"
ROLES = (*ROLE_KINDS, TOKENIZER_ROLE)
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf")
UNSUPPORTED_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
PARTIAL_EXTENSIONS = (".part", ".incomplete", ".tmp")
T5_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


@dataclass(frozen=True)
class TokenizerInfo:
    path: str
    files: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Candidate:
    path: str
    info: Union[ModelFileInfo, TokenizerInfo]


_CacheKey = tuple[str, int, int]
# Shared by every finder: classification is a pure function of the file's content, keyed by (realpath, size, mtime).
_FILE_CACHE: dict[_CacheKey, Union[ModelFileInfo, str]] = {}
_TOKENIZER_CACHE: dict[tuple[_CacheKey, ...], Union[TokenizerInfo, str]] = {}


def _cache_key(path: str) -> _CacheKey:
    status = os.stat(path)
    return os.path.realpath(path), status.st_size, status.st_mtime_ns


def _classify_cached(path: str) -> Union[ModelFileInfo, str]:
    key = _cache_key(path)
    if key not in _FILE_CACHE:
        try:
            _FILE_CACHE[key] = classify(path)
        except ModelFileError as error:
            _FILE_CACHE[key] = error.problem
    return _FILE_CACHE[key]


def _read_json(path: str) -> object:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def inspect_t5_tokenizer_dir(folder: str) -> Union[TokenizerInfo, str]:
    """A TokenizerInfo when ``folder`` holds a T5 tokenizer, else the reason it does not."""
    present = tuple(name for name in T5_TOKENIZER_FILES if os.path.isfile(os.path.join(folder, name)))
    if not present:
        return "no tokenizer.json or spiece.model"
    try:
        config_path = os.path.join(folder, "tokenizer_config.json")
        config = _read_json(config_path) if os.path.isfile(config_path) else {}
        tokenizer_class = str(config.get("tokenizer_class") or "") if isinstance(config, dict) else ""
        if tokenizer_class and "T5" not in tokenizer_class:
            return f"tokenizer_config.json names {tokenizer_class}, not a T5 tokenizer"
        if "tokenizer.json" in present:
            tokenizer = _read_json(os.path.join(folder, "tokenizer.json"))
            model_type = tokenizer.get("model", {}).get("type") if isinstance(tokenizer, dict) else None
            if model_type != "Unigram":
                return f"tokenizer.json is a {model_type} tokenizer (T5 uses a Unigram/SentencePiece vocabulary)"
            added = {token.get("content") for token in tokenizer.get("added_tokens") or [] if isinstance(token, dict)}
            t5_like = "<extra_id_0>" in added or {"<pad>", "</s>", "<unk>"} <= added
            if not (tokenizer_class or t5_like):
                return "tokenizer.json has no T5 special tokens (<pad>, </s>, <unk>)"
    except (OSError, ValueError, AttributeError) as error:
        return f"unreadable tokenizer files ({error})"
    return TokenizerInfo(folder, present, "T5 tokenizer (" + " + ".join(present) + ")")


def _tokenizer_cached(folder: str) -> Union[TokenizerInfo, str]:
    names = (*T5_TOKENIZER_FILES, "tokenizer_config.json")
    key = tuple(_cache_key(os.path.join(folder, name)) for name in names if os.path.isfile(os.path.join(folder, name)))
    if key not in _TOKENIZER_CACHE:
        _TOKENIZER_CACHE[key] = inspect_t5_tokenizer_dir(folder)
    result = _TOKENIZER_CACHE[key]
    return dataclasses.replace(result, path=folder) if isinstance(result, TokenizerInfo) else result


class ModelFinder:
    """Finds candidates for each role ("checkpoint", "t5", "tiny_vae", "transcoder", "tokenizer_t5")."""

    def __init__(self, search_dirs: Iterable[str | os.PathLike], *, max_depth: int = 4):
        if isinstance(search_dirs, (str, os.PathLike)):
            search_dirs = [search_dirs]
        self.search_dirs = [os.path.abspath(os.fspath(folder)) for folder in search_dirs]
        self.max_depth = max_depth
        self._skipped: list[tuple[str, str]] = []

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) for every file or folder the last ``find`` passed over."""
        return list(self._skipped)

    def find(self, role: str) -> list[Candidate]:
        """Sorted, deduplicated candidates for ``role``."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        self._skipped = []
        found: dict[str, Candidate] = {}
        for path, kind_of_entry in self._walk():
            real = os.path.realpath(path)
            if real in found:
                continue
            if kind_of_entry == "dir":
                if role == TOKENIZER_ROLE:
                    result = _tokenizer_cached(path)
                    if isinstance(result, TokenizerInfo):
                        found[real] = Candidate(path, result)
                    else:
                        self._skipped.append((path, result))
                continue
            if role == TOKENIZER_ROLE:
                continue
            try:
                result = _classify_cached(path)
            except OSError as error:
                self._skipped.append((path, f"unreadable ({error.strerror or error})"))
                continue
            if isinstance(result, str):
                self._skipped.append((path, result))
            elif role in ROLE_KINDS and result.kind in ROLE_KINDS[role]:
                found[real] = Candidate(path, dataclasses.replace(result, path=path))
        return sorted(found.values(), key=lambda candidate: (os.path.normcase(candidate.path), candidate.path))

    def candidates(self, role: str) -> list[Union[ModelFileInfo, TokenizerInfo]]:
        """The infos of ``find(role)`` (each carries its ``path``)."""
        return [candidate.info for candidate in self.find(role)]

    def paths(self, role: str) -> list[str]:
        return [candidate.path for candidate in self.find(role)]

    def _walk(self) -> Iterable[tuple[str, str]]:
        """Yields (path, "file") for model files and (path, "dir") for folders holding tokenizer files. Symbolic
        links inside the search folders are followed only to files: a linked folder could lead anywhere on the
        disk (add it as a search folder instead)."""
        visited: set[str] = set()
        for top in self.search_dirs:
            if not os.path.isdir(top):
                self._skipped.append((top, "search folder does not exist"))
                continue
            for folder, subfolders, files in os.walk(top, followlinks=False):
                real = os.path.realpath(folder)
                depth = 0 if folder == top else os.path.relpath(folder, top).count(os.sep) + 1
                if real in visited:  # a symlink loop or a folder reached twice
                    subfolders[:] = []
                    continue
                visited.add(real)
                subfolders[:] = sorted(name for name in subfolders if not name.startswith((".", "__pycache__")))
                if depth >= self.max_depth:
                    subfolders[:] = []
                if any(name in files for name in T5_TOKENIZER_FILES):
                    yield folder, "dir"
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    lower = name.lower()
                    if lower.endswith(MODEL_EXTENSIONS):
                        yield path, "file"
                    elif lower.endswith(UNSUPPORTED_EXTENSIONS):
                        self._skipped.append((path, "a pickle file (never loaded; use a .safetensors or GGUF file)"))
                    elif lower.endswith(PARTIAL_EXTENSIONS):
                        self._skipped.append((path, "partial download"))

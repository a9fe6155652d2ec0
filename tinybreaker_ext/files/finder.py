"""Lists the model files usable for each role (checkpoint, T5 encoder), found by reading headers (never names).
Tokenizer folders are found by files/tokenizer_search.py.

Each call to ``find`` walks the search folders again (bounded depth, so it is cheap) and reuses the
classification of files whose (path, size, mtime) did not change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterable, Union

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import CHECKPOINT_KINDS, FileKind, ModelFileInfo, classify

ROLE_KINDS: dict[str, frozenset[FileKind]] = {
    "checkpoint": CHECKPOINT_KINDS,
    "t5": frozenset({FileKind.T5_ENCODER}),
}
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf")
UNSUPPORTED_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
PARTIAL_EXTENSIONS = (".part", ".incomplete", ".tmp")


@dataclass(frozen=True)
class Candidate:
    path: str
    info: ModelFileInfo


_CacheKey = tuple[str, int, int]
# Shared by every finder: classification is a pure function of the file's content, keyed by (realpath, size, mtime).
_FILE_CACHE: dict[_CacheKey, Union[ModelFileInfo, str]] = {}


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


class ModelFinder:
    """Finds candidates for each role of ``ROLE_KINDS`` ("checkpoint", "t5")."""

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
        if role not in ROLE_KINDS:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLE_KINDS)}")
        self._skipped = []
        found: dict[str, Candidate] = {}
        for path in self._walk():
            real = os.path.realpath(path)
            if real in found:
                continue
            try:
                result = _classify_cached(path)
            except OSError as error:
                self._skipped.append((path, f"unreadable ({error.strerror or error})"))
                continue
            if isinstance(result, str):
                self._skipped.append((path, result))
            elif result.kind in ROLE_KINDS[role]:
                found[real] = Candidate(path, dataclasses.replace(result, path=path))
        return sorted(found.values(), key=lambda candidate: (os.path.normcase(candidate.path), candidate.path))

    def candidates(self, role: str) -> list[ModelFileInfo]:
        """The infos of ``find(role)`` (each carries its ``path``)."""
        return [candidate.info for candidate in self.find(role)]

    def _walk(self) -> Iterable[str]:
        """Yields the paths of model files (by extension; the content decides later). Symbolic
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
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    lower = name.lower()
                    if lower.endswith(MODEL_EXTENSIONS):
                        yield path
                    elif lower.endswith(UNSUPPORTED_EXTENSIONS):
                        self._skipped.append((path, "a pickle file (never loaded; use a .safetensors or GGUF file)"))
                    elif lower.endswith(PARTIAL_EXTENSIONS):
                        self._skipped.append((path, "partial download"))

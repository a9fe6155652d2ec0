"""Lists the model files usable for each role (checkpoint, T5 encoder), found by reading headers (never names).
Each call walks the search folders again (bounded depth, so it is cheap); classifications are cached.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Union

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import CHECKPOINT_KINDS, FileKind, ModelFileInfo, classify

ROLE_KINDS = {"checkpoint": CHECKPOINT_KINDS, "t5": (FileKind.T5_ENCODER,)}  # in the order of preference
ROLE_NAMES = {"checkpoint": "a TinyBreaker checkpoint", "t5": "a T5-XXL encoder file"}
MAX_DEPTH = 4  # folder levels below each search folder
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf")
UNSUPPORTED_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
PARTIAL_EXTENSIONS = (".part", ".incomplete", ".tmp")

# Shared by every finder: classification is a pure function of the file's content, keyed by (realpath, size, mtime).
_FILE_CACHE: dict[tuple[str, int, int], Union[ModelFileInfo, str]] = {}


def _classify_cached(path: str) -> Union[ModelFileInfo, str]:
    status = os.stat(path)
    key = os.path.realpath(path), status.st_size, status.st_mtime_ns
    if key not in _FILE_CACHE:
        try:
            _FILE_CACHE[key] = classify(path)
        except ModelFileError as error:
            _FILE_CACHE[key] = error.problem
    return _FILE_CACHE[key]


class ModelFinder:
    def __init__(self, search_dirs: Iterable[str | os.PathLike]):
        self.search_dirs = [os.path.abspath(os.fspath(folder)) for folder in search_dirs]
        self.skipped: list[tuple[str, str]] = []  # (path, reason) for each file or folder the last call passed over

    def candidates(self, role: str) -> list[ModelFileInfo]:
        """The files for ``role`` ("checkpoint" or "t5"), each real file once, the preferred kinds first (the
        default when no file is named), then by path."""
        kinds, self.skipped = ROLE_KINDS[role], []
        found: dict[str, ModelFileInfo] = {}
        for path in self._walk():
            real = os.path.realpath(path)
            if real in found:
                continue
            try:
                result = _classify_cached(path)
            except OSError as error:
                self.skipped.append((path, f"unreadable ({error.strerror or error})"))
                continue
            if isinstance(result, str):
                self.skipped.append((path, result))
            elif result.kind in kinds:
                found[real] = dataclasses.replace(result, path=path)
        return sorted(found.values(), key=lambda info: (kinds.index(info.kind), os.path.normcase(info.path), info.path))

    def _walk(self) -> Iterable[str]:
        """Paths of model files by extension. Symbolic links are followed only to files: a linked folder could lead
        anywhere on the disk (add it as a search folder instead)."""
        visited: set[str] = set()
        for top in self.search_dirs:
            if not os.path.isdir(top):
                self.skipped.append((top, "search folder does not exist"))
                continue
            for folder, subfolders, files in os.walk(top, followlinks=False):
                real = os.path.realpath(folder)
                depth = 0 if folder == top else os.path.relpath(folder, top).count(os.sep) + 1
                if real in visited:  # a symlink loop or a folder reached twice
                    subfolders[:] = []
                    continue
                visited.add(real)
                subfolders[:] = [] if depth >= MAX_DEPTH else sorted(
                    name for name in subfolders if not name.startswith((".", "__pycache__")))
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    lower = name.lower()
                    if lower.endswith(MODEL_EXTENSIONS):
                        yield path
                    elif lower.endswith(UNSUPPORTED_EXTENSIONS):
                        self.skipped.append((path, "a pickle file (never loaded; use a .safetensors or GGUF file)"))
                    elif lower.endswith(PARTIAL_EXTENSIONS):
                        self.skipped.append((path, "partial download"))

"""The style library: TinyBreaker's built-in styles plus any the user adds (docs/numerics.md "Styles").

Loading rules beyond the INI format (style_ini.py): files load in order and a later definition of a style overrides
the keys it sets (so a file with its own defaults section replaces a style completely); `[NAME:BASE]` inherits BASE
from the same text or, failing that, from what is already loaded; `load_dir` reads `styles_vNN.ini` files by version
(newest last, so it wins), then any other `*.ini` by name, so a ComfyUI-TinyBreaker install's `styles/` folder loads
as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from ..errors import ParameterError
from ..stage_params import STAGES, StageParams
from .style_ini import StyleError, StyleText, read_style_text

BUILTIN_STYLES_DIR = Path(__file__).resolve().parent.parent / "styles"
ORDER_FILE = "order.conf"
_VERSIONED_FILE = re.compile(r"styles_?v?(\d+)\.ini", re.IGNORECASE | re.ASCII)


class StyleLibrary:
    def __init__(self) -> None:
        self._defaults: dict[str, object] = {}
        self._styles: dict[str, dict[str, object]] = {}
        self._own: dict[str, set[str]] = {}  # per style: the keys it sets itself (not from the library's defaults)
        self._order: list[str] = []
        self.warnings: list[str] = []

    @classmethod
    def load_builtin(cls) -> "StyleLibrary":
        """The styles shipped with the extension (`tinybreaker_ext/styles`)."""
        return cls().load_dir(BUILTIN_STYLES_DIR, strict=True)

    def load_dir(self, path: str | os.PathLike, *, strict: bool = False) -> "StyleLibrary":
        """Adds the styles of a folder (or of a ComfyUI-TinyBreaker install, whose `styles/` folder is used).
        A file that cannot be read is skipped with a warning, or raises StyleError when `strict`."""
        folder = Path(path)
        if not folder.is_dir():
            raise StyleError(f"{folder}: not a folder")
        if not any(folder.glob("*.ini")) and (folder / "styles").is_dir():
            folder = folder / "styles"
        for ini_file in _style_files(folder):
            try:
                self.load_file(ini_file)
            except StyleError as error:
                if strict:
                    raise
                self.warnings.append(f"{error} (file skipped)")
        order_file = folder / ORDER_FILE
        if order_file.is_file():
            self.add_order(_read_text(order_file))
        return self

    def load_file(self, path: str | os.PathLike) -> "StyleLibrary":
        return self.load_text(_read_text(Path(path)), source=str(path))

    def load_text(self, text: str, source: str = "<style text>") -> "StyleLibrary":
        """Adds the styles defined in an INI text (raises StyleError if it is not INI)."""
        parsed = read_style_text(text, source)
        self._merge(parsed, source)
        self.warnings.extend(parsed.warnings)
        return self

    def add_order(self, order_text: str) -> None:
        """Appends the names of an `order.conf` text (comma-separated, `#`/`;` comment lines) not yet ordered."""
        for line in order_text.splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            for name in (part.strip() for part in line.split(",")):
                if name and name not in self._order:
                    self._order.append(name)

    def _merge(self, parsed: StyleText, source: str) -> None:
        first = not self._styles and not self._defaults
        if first:
            self._defaults = dict(parsed.defaults)
        defined: dict[str, dict[str, object]] = {}
        own: dict[str, set[str]] = {}
        for section in parsed.sections:
            start = None
            if section.parent:
                start = defined.get(section.parent)
                start_own = own.get(section.parent)
                if start is None:
                    start, start_own = self._styles.get(section.parent), self._own.get(section.parent)
                if start is None:
                    parsed.warnings.append(f"{source}: [{section.name}:{section.parent}] base style "
                                           f"{section.parent!r} is not defined; using the defaults")
            if start is not None:
                values = {**start, **section.values}
                own[section.name] = set(start_own or ()) | set(section.values)
            else:
                values = {**self._styles.get(section.name, self._defaults), **parsed.defaults, **section.values}
                # a later file's defaults section overrides the library's: its styles set those keys themselves
                own[section.name] = (self._own.get(section.name, set()) | set(section.values)
                                     | (set() if first else set(parsed.defaults)))
            defined[section.name] = values
        self._styles.update(defined)
        self._own.update(own)

    def names(self) -> list[str]:
        """Style names, in `order.conf` order, then the others in the order they were first defined."""
        ordered = [name for name in self._order if name in self._styles]
        return ordered + [name for name in self._styles if name not in ordered]

    def __len__(self) -> int:
        return len(self._styles)

    def resolve_name(self, name: str) -> str | None:
        """The style called `name`; failing that, the only one whose name matches ignoring case; else None."""
        if name in self._styles:
            return name
        matches = [known for known in self._styles if known.lower() == str(name).lower()]
        return matches[0] if len(matches) == 1 else None

    def get(self, name: str, defaults: Mapping[str, object] | None = None) -> dict[str, StageParams]:
        """Stage name → StageParams of the style; unset fields keep StageParams' fall-back defaults
        (docs/numerics.md "Styles"). ``defaults`` (flat ``stage.field`` values, e.g. a checkpoint's metadata
        defaults) replace the library's defaults under the style: keys the style sets itself still win."""
        resolved = self._require(name)
        values = dict(self._styles[resolved])
        for key, value in (defaults or {}).items():
            if key not in self._own.get(resolved, ()):
                values[key] = value
        return {stage: StageParams(**{key[len(stage) + 1:]: value for key, value in values.items()
                                      if key.startswith(stage + ".")}) for stage in STAGES}

    def _require(self, name: str) -> str:
        resolved = self.resolve_name(name)
        if resolved is None:
            known = ", ".join(self.names()) or "none loaded"
            raise ParameterError("style", f"unknown style {name!r} (known: {known})")
        return resolved


def _style_files(folder: Path) -> list[Path]:
    """`styles_vNN.ini` by version number, then the other `*.ini` files by name."""
    versioned, others = [], []
    for path in sorted(folder.glob("*.ini")):
        match = _VERSIONED_FILE.fullmatch(path.name)
        if match:
            versioned.append((int(match.group(1)), path))
        else:
            others.append(path)
    return [path for _, path in sorted(versioned)] + others


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise StyleError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise StyleError(f"{path}: cannot read ({error.strerror or error})") from None

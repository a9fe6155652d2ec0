"""The style library: the built-in styles plus any the user adds, in the INI format of ComfyUI-TinyBreaker's
`styles_vNN.ini`; the format and the loading rules: docs/numerics.md "Styles"."""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Mapping

from ..errors import ParameterError, TinyBreakerError
from ..stage_params import STAGES, StageParams

BUILTIN_STYLES_DIR = Path(__file__).resolve().parent.parent / "styles"
ORDER_FILE = "order.conf"
_VERSIONED_FILE = re.compile(r"styles_?v?(\d+)\.ini", re.IGNORECASE | re.ASCII)
DEFAULT_SECTION = "__default__"

STAGE_FIELD_TYPES: dict[str, type] = {item.name: type(item.default) for item in dataclasses.fields(StageParams)}
_DIGITS = re.compile(r"\d+", re.ASCII)
_DECIMAL = re.compile(r"\d*\.\d*", re.ASCII)
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d{1,30}\s*", re.ASCII)
_DEFAULT_HEADER = re.compile(r"^\s*\[\s*__default__\s*\]\s*$", re.MULTILINE)


class StyleError(TinyBreakerError, ValueError):
    """A style file (or style text) cannot be read as INI; names the source and, where known, the line."""


def typed_ini_value(raw: str) -> object:
    """A raw INI value typed the way the reference types it; None for an empty unquoted value."""
    if raw.startswith("'") and raw.endswith("'") or raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    if _DIGITS.fullmatch(raw):
        return int(raw) if len(raw) <= 30 else raw
    if _DECIMAL.fullmatch(raw) and raw != ".":
        return float(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return None if raw.strip() == "" else raw


def stage_value(field_name: str, value: object) -> object:
    """`value` converted to the type of StageParams.`field_name`; ParameterError when it cannot be."""
    kind = STAGE_FIELD_TYPES[field_name]
    if isinstance(value, bool):
        raise ParameterError(field_name, f"expected {kind.__name__}, got a true/false value")
    if kind is str:
        return str(value)
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            return int(value)
        raise ParameterError(field_name, f"expected a whole number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(field_name, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ParameterError(field_name, f"expected a finite number, got {value!r}")
    return number


def _read_style_text(text: str, source: str, warnings: list[str]) -> tuple[dict, list[tuple[str, str | None, dict]]]:
    """One INI text's defaults and its ``(name, base or None, values)`` sections in order, values as flat
    ``stage.field`` keys. Raises StyleError when it is not INI; skips (and reports) unusable keys and values."""
    text = str(text or "")
    prepended = _DEFAULT_HEADER.search(text) is None
    if prepended:
        text = f"[{DEFAULT_SECTION}]\n" + text
    # No %-interpolation: prompts may contain '%'. default_section="" keeps __default__ an ordinary section.
    config = configparser.ConfigParser(interpolation=None, empty_lines_in_values=False, default_section="")
    try:
        config.read_string(text, source=source)
    except configparser.Error as error:
        raise StyleError(f"{source}: {_describe(error, line_offset=1 if prepended else 0)}") from None

    defaults: dict[str, object] = {}
    sections: list[tuple[str, str | None, dict]] = []
    seen: set[str] = set()
    for section in config.sections():
        name, _, parent = (part.strip() for part in section.partition(":"))
        if not name:
            warnings.append(f"{source}: section [{section}] has no style name (skipped)")
            continue
        if name in seen:
            warnings.append(f"{source}: style {name!r} is defined twice; the later one wins")
        seen.add(name)
        values = _section_values(config, section, source, warnings)
        if name == DEFAULT_SECTION:
            defaults.update(values)
        else:
            sections.append((name, parent or None, values))
    return defaults, sections


def _section_values(config: configparser.ConfigParser, section: str, source: str, warnings: list[str]) -> dict:
    values: dict[str, object] = {}
    for key, raw in config.items(section, raw=True):
        stage, _, field_name = key.partition(".")
        if stage not in STAGES or field_name not in STAGE_FIELD_TYPES:
            warnings.append(f"{source}: [{section}] unknown key {key!r} (skipped)")
            continue
        typed = typed_ini_value(raw)
        if typed is None:
            continue
        try:
            values[key] = stage_value(field_name, typed)
        except ParameterError as error:
            warnings.append(f"{source}: [{section}] {key}: {error.problem} (skipped)")
    return values


def _describe(error: configparser.Error, line_offset: int) -> str:
    """A one-line description of a configparser error, with line numbers of the user's own text."""
    if isinstance(error, configparser.ParsingError) and getattr(error, "errors", None):
        line_number, line = error.errors[0]
        return f"line {line_number - line_offset}: cannot read {line.strip()[:60]!r}"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"line {(error.lineno or 0) - line_offset}: section [{error.section}] appears twice"
    if isinstance(error, configparser.DuplicateOptionError):
        return f"line {(error.lineno or 0) - line_offset}: key {error.option!r} appears twice in [{error.section}]"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def format_style_section(name: str, stages: dict[str, StageParams]) -> str:
    """One ``[NAME]`` section that sets every value of the given stages, in the format `load_text` reads."""
    lines = [f"[{name}]"]
    for stage, values in stages.items():
        for item in dataclasses.fields(StageParams):
            value = getattr(values, item.name)
            if isinstance(value, str):
                text = '"' + " ".join(value.splitlines()).replace('"', "'") + '"'
            elif isinstance(value, float):
                text = repr(round(value, 6))
            else:
                text = str(value)
            lines.append(f"{stage}.{item.name} = {text}")
    return "\n".join(lines) + "\n"


def replace_section(text: str, name: str, section: str) -> str:
    """``text`` with its ``[NAME]`` (or ``[NAME:BASE]``) section, if any, replaced by ``section`` (else appended)."""
    header = re.compile(r"^\s*\[\s*" + re.escape(name) + r"\s*(?::[^\]]*)?\]\s*$")
    kept, skipping = [], False
    for line in text.splitlines():
        if re.match(r"^\s*\[", line):
            skipping = bool(header.match(line))
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).rstrip()
    return (body + "\n\n" if body else "") + section


class StyleLibrary:
    def __init__(self) -> None:
        self._defaults: dict[str, object] = {}
        self._styles: dict[str, dict[str, object]] = {}
        self._own: dict[str, set[str]] = {}  # per style: the keys it sets itself (not from the library's defaults)
        self._order: list[str] = []
        self.warnings: list[str] = []

    @classmethod
    def load_builtin(cls) -> "StyleLibrary":
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
                self.load_text(_read_text(ini_file), source=str(ini_file))
            except StyleError as error:
                if strict:
                    raise
                self.warnings.append(f"{error} (file skipped)")
        order_file = folder / ORDER_FILE
        if order_file.is_file():  # comma-separated names and `#`/`;` comment lines; names already ordered stay
            for line in _read_text(order_file).splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                for name in (part.strip() for part in line.split(",")):
                    if name and name not in self._order:
                        self._order.append(name)
        return self

    def load_text(self, text: str, source: str = "<style text>") -> "StyleLibrary":
        """Adds the styles defined in an INI text (raises StyleError if it is not INI)."""
        self._merge(*_read_style_text(text, source, self.warnings), source)
        return self

    def _merge(self, defaults: dict, sections: list[tuple[str, str | None, dict]], source: str) -> None:
        first = not self._styles and not self._defaults
        if first:
            self._defaults = dict(defaults)
        defined: dict[str, dict[str, object]] = {}
        own: dict[str, set[str]] = {}
        for name, parent, section_values in sections:
            if parent in defined:  # the same text's
                start, start_own = defined[parent], own[parent]
            elif parent in self._styles:  # already loaded
                start, start_own = self._styles[parent], self._own[parent]
            else:
                start = start_own = None
                if parent:
                    self.warnings.append(f"{source}: [{name}:{parent}] base style {parent!r} is not defined; "
                                         "using the defaults")
            if start is not None:
                values = {**start, **section_values}
                own[name] = set(start_own) | set(section_values)
            else:
                values = {**self._styles.get(name, self._defaults), **defaults, **section_values}
                # a later file's defaults section overrides the library's: its styles set those keys themselves
                own[name] = (self._own.get(name, set()) | set(section_values)
                             | (set() if first else set(defaults)))
            defined[name] = values
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
        """Stage name → StageParams; ``defaults`` (flat ``stage.field`` values: a checkpoint's metadata defaults)
        replace the library's defaults section under the style, keys the style sets itself still win."""
        resolved = self.resolve_name(name)
        if resolved is None:
            known = ", ".join(self.names()) or "none loaded"
            raise ParameterError("style", f"unknown style {name!r} (known: {known})")
        values = dict(self._styles[resolved])
        for key, value in (defaults or {}).items():
            if key not in self._own.get(resolved, ()):
                values[key] = value
        return {stage: StageParams(**{key[len(stage) + 1:]: value for key, value in values.items()
                                      if key.startswith(stage + ".")}) for stage in STAGES}


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

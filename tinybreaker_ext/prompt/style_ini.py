"""Reads one TinyBreaker style text, the INI format of ComfyUI-TinyBreaker's `styles_vNN.ini` (docs/numerics.md
"Styles"); `styles.StyleLibrary` resolves inheritance across files. Beyond the docs: an empty unquoted value is
dropped (write "" for an empty text), anything untyped stays text (so `-1` is text, converted where an int is
needed), and unknown keys are reported and skipped.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import re
from dataclasses import dataclass, field

from ..errors import ParameterError, TinyBreakerError
from ..stage_params import STAGES, StageParams

DEFAULT_SECTION = "__default__"

_STAGE_FIELD_TYPES: dict[str, type] = {item.name: type(item.default) for item in dataclasses.fields(StageParams)}
_DIGITS = re.compile(r"\d+", re.ASCII)
_DECIMAL = re.compile(r"\d*\.\d*", re.ASCII)
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d{1,30}\s*", re.ASCII)
_DEFAULT_HEADER = re.compile(r"^\s*\[\s*__default__\s*\]\s*$", re.MULTILINE)


class StyleError(TinyBreakerError, ValueError):
    """A style file (or style text) cannot be read as INI; names the source and, where known, the line."""


@dataclass
class StyleSection:
    """One `[NAME]` or `[NAME:BASE]` section: its own typed, checked values, as flat `stage.field` keys."""

    name: str
    parent: str | None
    values: dict[str, object] = field(default_factory=dict)


@dataclass
class StyleText:
    """What one INI text defines: its implicit defaults, its sections in order, and what was skipped."""

    defaults: dict[str, object] = field(default_factory=dict)
    sections: list[StyleSection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_DROP = object()


def typed_ini_value(raw: str) -> object:
    """A raw INI value typed the way the reference types it; `_DROP` for an empty unquoted value."""
    if raw.startswith("'") and raw.endswith("'") or raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    if _DIGITS.fullmatch(raw):
        return int(raw) if len(raw) <= 30 else raw
    if _DECIMAL.fullmatch(raw) and raw != ".":
        return float(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.strip() == "":
        return _DROP
    return raw


def stage_value(field_name: str, value: object) -> object:
    """`value` converted to the type of StageParams.`field_name`; ParameterError when it cannot be."""
    kind = _STAGE_FIELD_TYPES.get(field_name)
    if kind is None:
        raise ParameterError(field_name, f"not a stage parameter (known: {', '.join(_STAGE_FIELD_TYPES)})")
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
    except ValueError:
        raise ParameterError(field_name, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ParameterError(field_name, f"expected a finite number, got {value!r}")
    return number


def read_style_text(text: str, source: str = "<style text>") -> StyleText:
    """Parses one INI text. Raises StyleError when it is not INI; skips (and reports) unusable keys and values."""
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

    result = StyleText()
    seen: set[str] = set()
    for section in config.sections():
        name, _, parent = (part.strip() for part in section.partition(":"))
        if not name:
            result.warnings.append(f"{source}: section [{section}] has no style name (skipped)")
            continue
        if name in seen:
            result.warnings.append(f"{source}: style {name!r} is defined twice; the later one wins")
        seen.add(name)
        values = _section_values(config, section, source, result.warnings)
        if name == DEFAULT_SECTION:
            result.defaults.update(values)
        else:
            result.sections.append(StyleSection(name, parent or None, values))
    return result


def _section_values(config: configparser.ConfigParser, section: str, source: str, warnings: list[str]) -> dict:
    values: dict[str, object] = {}
    for key, raw in config.items(section, raw=True):
        stage, _, field_name = key.partition(".")
        if stage not in STAGES or field_name not in _STAGE_FIELD_TYPES:
            warnings.append(f"{source}: [{section}] unknown key {key!r} (skipped)")
            continue
        typed = typed_ini_value(raw)
        if typed is _DROP:
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
    """One ``[NAME]`` section that sets every value of the given stages, in the format `read_style_text` reads."""
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

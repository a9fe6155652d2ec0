"""TinyBreaker's inline prompt language: `a cat on a roof --no people --aspect 3:2 --portrait --seed 5`, read here
(docs/numerics.md "Inline prompt arguments", and its "Deliberate differences"); what it cannot use becomes warnings.
`plan.make_plan` applies the values with the fields' ranges."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field

from ..errors import ParameterError
from ..params import DETAIL_LEVEL_WORDS, UPSCALE_MODES, UPSCALE_NOISE_WORDS
from .sizes import clamp_aspect, parse_aspect

RANDOM_SEED_MAX = 1 << 24  # `--seed random` draws from [0, 2^24], inclusive, like the reference
SEED_MAX = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class ArgumentSpec:
    name: str
    aliases: tuple[str, ...]
    kind: str  # text, style, name, int, float, upscale, flag, seed, aspect, detail, noise, batch, ignored
    help: str
    deprecated: bool = False


# In the reference's processing order (docs/numerics.md "Inline prompt arguments").
ARGUMENTS: tuple[ArgumentSpec, ...] = (
    ArgumentSpec("style", (), "style", "style name, applied before everything else"),
    ArgumentSpec("prompt", (), "ignored", "ignored: the text before the first -- is the prompt"),
    ArgumentSpec("no", ("negative",), "text", "negative prompt for the base and the refiner"),
    ArgumentSpec("refine", (), "text", "refiner prompt, put before the prompt; '!text' replaces the prompt"),
    ArgumentSpec("cfg-shift", ("c",), "int", "adds 0.2 per step to the base CFG"),
    ArgumentSpec("image-shift", ("i",), "int", "adds to the refiner seed: a variation of the same image"),
    ArgumentSpec("upscale", ("u",), "upscale", "on/off: run the tiny upscaler (bare --upscale means on); "
                                               "upscaler/enhancer: on, in that mode"),
    ArgumentSpec("upscale-noise", (), "noise", "extra noise of the upscaler: steps of 0.2 or a level word"),
    ArgumentSpec("upscale-model", (), "name", "upscale model run before the tile refine, or 'none'"),
    ArgumentSpec("detail-level", ("d",), "detail", "refiner step factor: a whole number or a level word"),
    ArgumentSpec("seed", ("s",), "seed", "base seed, or 'random'"),
    ArgumentSpec("aspect", ("a",), "aspect", "aspect ratio W:H"),
    ArgumentSpec("landscape", (), "flag", "wide orientation"),
    ArgumentSpec("portrait", (), "flag", "tall orientation (wins over --landscape)"),
    ArgumentSpec("small", (), "flag", "scale 1.0"),
    ArgumentSpec("medium", (), "flag", "scale 1.0"),
    ArgumentSpec("large", (), "flag", "scale 1.22 (wins over --medium and --small)"),
    ArgumentSpec("batch-size", ("b",), "batch", "images per batch"),
    ArgumentSpec("variant", (), "int", "sets the refiner seed (deprecated: use --image-shift)", deprecated=True),
    ArgumentSpec("cfg-adjust", (), "float", "adds to the base CFG (deprecated: use --cfg-shift)", deprecated=True),
)
CANONICAL_NAME: dict[str, str] = {key: spec.name for spec in ARGUMENTS for key in (spec.name, *spec.aliases)}

_INTEGER = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,3})?", re.ASCII)
_TRUE_WORDS, _FALSE_WORDS = ("on", "true", "yes"), ("off", "false", "no")
_NAME_AND_VALUE = re.compile(r"(\S*)\s*(.*)", re.DOTALL)


@dataclass
class InlinePrompt:
    """What `parse_inline_prompt` read. `args` holds raw values by canonical name (aliases merged, last one written
    wins); `values` holds the usable ones, typed."""

    text: str = ""
    prompt: str = ""
    args: dict[str, str] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def without_arguments(text: str, names: set[str]) -> str:
    """``text`` with the inline arguments whose canonical name is in ``names`` removed, the rest kept as written."""
    prompt, *chunks = str(text or "").split("--")
    kept = [chunk for chunk in chunks
            if CANONICAL_NAME.get(_NAME_AND_VALUE.fullmatch(chunk).group(1).lower()) not in names]
    return "--".join([prompt, *kept]).rstrip()


def parse_inline_prompt(text: str) -> InlinePrompt:
    """Reads a prompt with inline `--` arguments. Never raises; problems become `warnings`."""
    full_text = "\n".join(line.strip() for line in str(text or "").strip().splitlines())
    prompt, *chunks = full_text.split("--")
    parsed = InlinePrompt(text=full_text, prompt=prompt.strip())
    for chunk in chunks:
        raw_name, value = _NAME_AND_VALUE.fullmatch(chunk).groups()
        name, value = raw_name.lower(), value.strip()
        if not name:
            if value:
                parsed.warnings.append(f"text after a lone '--' is ignored: {_short(value)!r}")
            continue
        canonical = CANONICAL_NAME.get(name)
        if canonical is None:
            close = difflib.get_close_matches(name, list(CANONICAL_NAME), n=1)
            hint = f"; did you mean --{close[0]}?" if close else ""
            parsed.warnings.append(f"unknown argument --{_short(name)} (ignored){hint}")
            continue
        parsed.args.pop(canonical, None)  # keep the order of last appearance
        parsed.args[canonical] = value

    for spec in (spec for spec in ARGUMENTS if spec.name in parsed.args):
        try:
            typed = _READERS[spec.kind](spec, parsed.args[spec.name], parsed.warnings)
        except _Refused as refusal:
            parsed.warnings.append(f"--{spec.name}: {refusal} (ignored)")
            continue
        if typed is not None:
            parsed.values[spec.name] = typed
        if spec.deprecated:
            parsed.warnings.append(f"--{spec.name} is deprecated: {spec.help}")
    return parsed


class _Refused(Exception):
    """A value the argument cannot use; becomes a warning."""


def _read_ignored(spec, value, warnings):
    warnings.append(f"--{spec.name} is ignored: the text before the first '--' is the prompt")
    return None


def _read_int(spec, value, warnings):
    if not _INTEGER.fullmatch(value):
        raise _Refused(f"expects a whole number like -1 or +2, got {_short(value)!r}")
    return int(value)


def _read_float(spec, value, warnings):
    if not _FLOAT.fullmatch(value):
        raise _Refused(f"expects a number, got {_short(value)!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _Refused(f"expects a finite number, got {_short(value)!r}")
    return number


def _read_upscale(spec, value, warnings):
    word = value.lower()
    if not word or word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    if word in UPSCALE_MODES:
        return word
    raise _Refused(f"expects on, off, {' or '.join(UPSCALE_MODES)}, got {_short(value)!r}")


def _read_flag(spec, value, warnings):
    if value:
        warnings.append(f"--{spec.name} takes no value; {_short(value)!r} is ignored")
    return True


def _read_seed(spec, value, warnings):
    if value.lower() == "random" or value == "-1":
        return "random"
    if not _INTEGER.fullmatch(value):
        raise _Refused(f"expects a whole number or 'random', got {_short(value)!r}")
    seed = int(value)
    if not 0 <= seed <= SEED_MAX:
        raise _Refused(f"must be from 0 to {SEED_MAX} (or -1/random), got {seed}")
    return seed


def _read_aspect(spec, value, warnings):
    words = value.split(maxsplit=1)
    try:
        width, height = parse_aspect(value)
    except ParameterError as error:
        raise _Refused(error.problem) from None
    if len(words) > 1:
        warnings.append(f"--{spec.name}: {_short(words[1])!r} after {words[0]!r} is ignored")
    clamped = clamp_aspect(width, height)
    if clamped != (width, height):
        warnings.append(f"--{spec.name} {width}:{height} is clamped to {clamped[0]}:{clamped[1]} "
                        "(one side may be at most 6 times the other)")
    return clamped


def _read_nonempty(what):
    def read(spec, value, warnings):
        if not value:
            raise _Refused(f"needs {what}")
        return value
    return read


def _read_level_or_int(levels):
    def read(spec, value, warnings):
        word = value.lower()
        if word in levels:
            return word
        if not _INTEGER.fullmatch(value):
            raise _Refused(f"expects a whole number or one of {', '.join(levels)}, got {_short(value)!r}")
        return int(value)
    return read


def _read_batch(spec, value, warnings):
    size = _read_int(spec, value, warnings)
    if size < 1:
        raise _Refused(f"must be at least 1, got {size}")
    return size


_READERS = {
    "text": lambda spec, value, warnings: value, "style": _read_nonempty("a style name"), "ignored": _read_ignored,
    "int": _read_int, "float": _read_float, "name": _read_nonempty("a name"), "upscale": _read_upscale,
    "flag": _read_flag, "seed": _read_seed, "aspect": _read_aspect, "detail": _read_level_or_int(DETAIL_LEVEL_WORDS),
    "noise": _read_level_or_int(UPSCALE_NOISE_WORDS), "batch": _read_batch,
}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"

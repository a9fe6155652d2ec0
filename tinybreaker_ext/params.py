"""The one validated model of the script's parameters: UI controls, API arguments, infotext, the options schema, XYZ
axes and command-line options all derive from ``FIELDS`` (docs/design.md "Adding a field"). Plain dataclasses, not
pydantic: a field also carries its UI label, infotext key and help, and the command line installs no pydantic.
Zero / "style" values mean "the selected style's value"."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import ParameterError

# The positional argument list's version: 1 had the first 18 fields, 2 appended refine_sampler, 3 upscale_mode and
# upscale_model. Fields are only appended, so an older stored list (a queue tool's) is a prefix: the rest default.
SCHEMA_VERSION = 3

FROM_STYLE = "style"
BASE_SAMPLERS = (FROM_STYLE, "euler", "euler_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "deis", "uni_pc", "ddim")
BASE_SCHEDULERS = (FROM_STYLE, "simple", "normal", "karras", "exponential", "sgm_uniform", "ddim_uniform", "beta",
                   "linear_quadratic", "kl_optimal")
T5_MODES = ("auto", "gpu", "cpu", "stream")
SIZE_PRESETS = ("custom", "1:1", "4:3", "3:2", "16:10", "16:9", "2:1", "21:9", "12:5", "70:27", "32:9")
ORIENTATIONS = ("landscape", "portrait")
SIZE_SCALES = ("medium", "large")
REFINE_SAMPLERS = ("tinybreaker", "webui")  # the refine's sampler: the style's on the host's model, or the host's
# The Tiny Upscaler's modes, ComfyUI-TinyBreaker v0.4's useful two (the upscale_mode field's help says what they do).
UPSCALE_MODES = ("upscaler", "enhancer")
NO_UPSCALE_MODEL = "none"  # upscale_model: no pre-upscale, the bilinear resize alone (the WebUI's own "None" too)

# Units of the shift fields, the reference's: --cfg-shift and --upscale-noise move by 0.2 per step.
CFG_SHIFT_STEP = 0.2
UPSCALE_NOISE_STEP = 0.2
# The reference's level words in field units. Detail level "none" (the field's minimum) turns the refine off, as the
# reference's -10000 does; upscale noise "none" is the minimum, which takes every style's extra noise to 0.
DETAIL_LEVEL_NONE = -10
DETAIL_LEVEL_WORDS: dict[str, int] = {
    "none": DETAIL_LEVEL_NONE, "minimal": -2, "low": -1, "normal": 0, "high": 1, "veryhigh": 2, "maximum": 3,
}
UPSCALE_NOISE_WORDS: dict[str, int] = {
    "none": -5, "minimal": -2, "low": -1, "normal": 0, "high": 1, "veryhigh": 2, "maximum": 3,
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: type  # bool, int, float or str
    default: Any
    label: str
    infotext_key: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None  # fixed choices; None = free text (checked where the value is used)
    renamed: tuple[tuple[str, str], ...] = ()  # (other name, choice): names other tools or versions wrote
    help: str = ""
    xyz: bool = False  # offered as an XYZ-plot axis

    def describe_allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        kind = {int: "an integer", float: "a number", str: "a string"}[self.kind]
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return kind


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("enabled", bool, False, "TinyBreaker", "TinyBreaker"),
    FieldSpec("checkpoint", str, "", "Checkpoint", "TinyBreaker model",
              help="TinyBreaker file name; empty = the first one found"),
    FieldSpec("t5_file", str, "", "T5 encoder", "TinyBreaker T5",
              help="T5-XXL encoder file name; empty = the first one found"),
    FieldSpec("style", str, "PHOTO", "Style", "TinyBreaker style", help="a style name, or 'none'", xyz=True),
    FieldSpec("base_sampler", str, FROM_STYLE, "Base sampler", "TinyBreaker base sampler", choices=BASE_SAMPLERS,
              xyz=True, renamed=(("dpmpp_2m_sde_gpu", "dpmpp_2m_sde"), ("euler_cfg_pp", "euler"),
                                 ("euler_ancestral_cfg_pp", "euler_ancestral"), ("dpmpp_2m_cfg_pp", "dpmpp_2m"))),
    FieldSpec("base_scheduler", str, FROM_STYLE, "Base schedule", "TinyBreaker base schedule",
              choices=BASE_SCHEDULERS, xyz=True),
    FieldSpec("base_steps", int, 0, "Base steps (0 = style)", "TinyBreaker base steps", 0, 100, 1, xyz=True),
    FieldSpec("base_cfg", float, 0.0, "Base CFG (0 = style)", "TinyBreaker base CFG", 0.0, 30.0, 0.1, xyz=True),
    FieldSpec("refine_strength", float, 0.0, "Refine strength (0 = style)", "TinyBreaker refine strength",
              0.0, 1.0, 0.01, xyz=True),
    FieldSpec("refine_steps", int, 0, "Refine steps (0 = style)", "TinyBreaker refine steps", 0, 100, 1, xyz=True),
    FieldSpec("refine_cfg", float, 0.0, "Refine CFG (0 = style)", "TinyBreaker refine CFG", 0.0, 30.0, 0.1,
              xyz=True),
    FieldSpec("detail_level", int, 0, "Detail level", "TinyBreaker detail level", DETAIL_LEVEL_NONE, 10, 1, xyz=True,
              help="more or fewer refine steps at a higher or lower start, like the reference's --detail-level; "
                   f"{DETAIL_LEVEL_NONE} = none: no refine"),
    FieldSpec("image_shift", int, 0, "Image shift", "TinyBreaker image shift", -1_000_000, 1_000_000, 1, xyz=True,
              help="added to the refine seed: changes the refine noise only, keeping the composition"),
    FieldSpec("cfg_shift", int, 0, "CFG shift", "TinyBreaker CFG shift", -20, 20, 1, xyz=True,
              help=f"adds {CFG_SHIFT_STEP} per step to the base CFG"),
    FieldSpec("t5_mode", str, "auto", "T5 placement", "TinyBreaker T5 mode", choices=T5_MODES),
    FieldSpec("upscale", bool, False, "Tiny Upscaler", "TinyBreaker upscale",
              help="after the refine, enlarge and re-detail in 1024-px tiles with the loaded SD1 model"),
    FieldSpec("upscale_by", float, 2.0, "Upscale by", "TinyBreaker upscale by", 1.5, 6.0, 0.5, xyz=True),
    FieldSpec("upscale_noise", int, 0, "Upscale noise", "TinyBreaker upscale noise", -5, 5, 1, xyz=True,
              help=f"extra noise before the upscaler, {UPSCALE_NOISE_STEP} per step on top of the style's"),
    FieldSpec("refine_sampler", str, "tinybreaker", "Refine sampler", "TinyBreaker refine sampler",
              choices=REFINE_SAMPLERS, xyz=True,
              help="tinybreaker: the style's refine sampler, schedule and step window on the WebUI's model (the "
                   "reference's image); webui: the WebUI's own sampler, driven by a denoising strength"),
    FieldSpec("upscale_mode", str, "upscaler", "Upscaler mode", "TinyBreaker upscale mode", choices=UPSCALE_MODES,
              xyz=True, help="upscaler: the enlarged image; enhancer: re-detailed at the enlarged size, then scaled "
                             "back to the original size"),
    FieldSpec("upscale_model", str, NO_UPSCALE_MODEL, "Upscale model", "TinyBreaker upscale model", xyz=True,
              help=f"{NO_UPSCALE_MODEL!r}, or an upscaler that enlarges the image before the tile refine: one of the "
                   "WebUI's upscalers (ESRGAN …); on the command line a .safetensors upscale model (needs spandrel)"),
)

FIELD_BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(FIELD_BY_NAME)


class _ParamsMethods:
    @property
    def pre_upscaler(self) -> str | None:
        """The upscale model to run before the tile refine, or None ('none', empty or the WebUI's 'None')."""
        name = self.upscale_model.strip()
        return None if name.lower() in ("", NO_UPSCALE_MODEL) else name

    def replace(self, **changes: Any) -> "TinyBreakerParams":
        return from_dict({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TinyBreakerParams = dataclasses.make_dataclass("TinyBreakerParams", [(spec.name, spec.kind, spec.default)
                                                                     for spec in FIELDS],
                                               bases=(_ParamsMethods,), frozen=True)
TinyBreakerParams.__module__ = __name__  # make_dataclass's own module argument needs Python 3.12


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Turn an API/UI/infotext value into the field's type, or raise a ParameterError naming the field."""
    allowed = spec.describe_allowed()
    if value is None:
        return spec.default
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise ParameterError(spec.name, f"got {value!r}; expected {allowed}")
    if spec.kind in (int, float):
        if not isinstance(value, (int, float, str)):
            raise ParameterError(spec.name, f"got {type(value).__name__} {value!r}; expected {allowed}")
        try:
            number = float(value)  # float() strips the whitespace around a number
        except ValueError:
            number = math.nan  # not a number: refused with the others below
        # bool is an int subclass, but True as "1 step" is a caller's bug
        if isinstance(value, bool) or not math.isfinite(number) or (spec.kind is int and not number.is_integer()):
            raise ParameterError(spec.name, f"got {value!r}; expected {allowed}")
        number = spec.kind(number)
        if (spec.minimum is not None and number < spec.minimum) or (
                spec.maximum is not None and number > spec.maximum):
            raise ParameterError(spec.name, f"{_fmt(number)} is out of range; expected {allowed}")
        return number
    if not isinstance(value, str):
        raise ParameterError(spec.name, f"got {type(value).__name__} {value!r}; expected {allowed}")
    value = value.strip()
    if spec.choices is not None:
        value = dict(spec.renamed).get(value.lower(), value)
        match = next((choice for choice in spec.choices if choice.lower() == value.lower()), None)
        if match is None:
            raise ParameterError(spec.name, f"got {value!r}; expected {allowed}")
        return match
    return value


def from_dict(values: Mapping[str, Any], base: TinyBreakerParams | None = None) -> TinyBreakerParams:
    """Named fields (the API's dict form); unknown names are an error that lists the known ones."""
    if not isinstance(values, Mapping):
        raise ParameterError("args", f"expected a dict of named fields, got {type(values).__name__}")
    unknown = [key for key in values if key not in FIELD_BY_NAME]
    if unknown:
        raise ParameterError(str(unknown[0]) or "args", f"unknown field {unknown[0]!r}; known fields are "
                             + ", ".join(FIELD_NAMES))
    current = (base or TinyBreakerParams()).as_dict()
    for key, value in values.items():
        current[key] = coerce(FIELD_BY_NAME[key], value)
    return TinyBreakerParams(**current)


def from_script_args(args: Sequence[Any], warnings: list[str] | None = None) -> TinyBreakerParams:
    """The script's argument slice: positional values in ``FIELDS`` order, or a dict of named fields. A dict in the
    first slot is the whole request (the host fills the slots after it with the UI's defaults); one after positional
    values (``[true, {"base_steps": 14}]``) overrides them. Missing trailing values default (a list stored by an
    older version); values past the known fields (a newer version's) are ignored with a note in ``warnings``."""
    args = list(args)
    dict_index = next((index for index, arg in enumerate(args) if isinstance(arg, Mapping)), None)
    if dict_index == 0:
        return from_dict(args[0])
    named: Mapping[str, Any] = {}
    if dict_index is not None:
        named, args = args[dict_index], args[:dict_index]
    if len(args) > len(FIELDS):
        if warnings is not None:
            warnings.append(f"{len(args) - len(FIELDS)} argument value(s) after the {len(FIELDS)} known fields were "
                            f"ignored (a newer version's arguments?)")
        args = args[:len(FIELDS)]
    positional = {spec.name: coerce(spec, value) for spec, value in zip(FIELDS, args)}
    return from_dict(named, base=TinyBreakerParams(**positional))


def to_infotext(params: TinyBreakerParams) -> dict[str, Any]:
    """Namespaced infotext keys; 'TinyBreaker: on' marks the image. Defaults are written too, so a paste restores."""
    if not params.enabled:
        return {}
    fields: dict[str, Any] = {}
    for spec in FIELDS:
        value = getattr(params, spec.name)
        if spec.kind is bool:
            fields[spec.infotext_key] = "on" if value else "off"
        elif spec.kind is float:
            fields[spec.infotext_key] = _fmt(value)
        elif value != "" or spec.kind is not str:
            fields[spec.infotext_key] = value
    return fields


def from_infotext(infotext: Mapping[str, str]) -> dict[str, Any]:
    """Field values of a parsed infotext; bad ones are skipped so a paste from another version restores the rest."""
    found: dict[str, Any] = {}
    if infotext.get(FIELD_BY_NAME["enabled"].infotext_key) is None:
        return found
    for spec in (spec for spec in FIELDS if infotext.get(spec.infotext_key) is not None):
        with contextlib.suppress(ParameterError):
            found[spec.name] = coerce(spec, infotext[spec.infotext_key])
    found["enabled"] = str(infotext.get(FIELD_BY_NAME["enabled"].infotext_key)).strip().lower() in _TRUE_WORDS
    return found


def options_schema(dynamic_choices: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """The JSON schema-like description served at /tinybreaker/v1/options."""
    dynamic_choices = dynamic_choices or {}
    fields = []
    for index, spec in enumerate(FIELDS):
        entry: dict[str, Any] = {
            "index": index, "name": spec.name, "type": spec.kind.__name__, "default": spec.default,
            "label": spec.label, "infotext": spec.infotext_key,
        }
        choices = dynamic_choices.get(spec.name, spec.choices)
        optional = {"minimum": spec.minimum, "maximum": spec.maximum,
                    "choices": None if choices is None else list(choices), "help": spec.help or None}
        entry.update((key, value) for key, value in optional.items() if value is not None)
        fields.append(entry)
    return {"script": "TinyBreaker", "version": SCHEMA_VERSION,
            "args": "positional list in this order, or one dict of named fields", "fields": fields}


_TRUE_WORDS = {"true", "on", "yes", "1", "enabled"}
_FALSE_WORDS = {"false", "off", "no", "0", "disabled", ""}


def _fmt(number: float) -> str:
    """Clean number text for messages and infotext: 3.2, not 3.2000000000000002; 5, not 5.0."""
    number = float(number)
    return str(int(number)) if number.is_integer() else f"{number:.6g}"


def field_label_callable(name: str) -> Callable[[Mapping[str, str]], Any]:
    """For a host's infotext_fields: a callable that pulls one field's pasted value out of the parsed dict."""
    spec = FIELD_BY_NAME[name]

    def pick(infotext: Mapping[str, str]) -> Any:
        values = from_infotext(infotext)
        return values.get(name, spec.default) if values else None

    return pick

"""Infotext (A1111 "parameters" text) written and read the way ComfyUI-TinyBreaker's Save Image does (spec §7).

The prompt line keeps the whole inline prompt, arguments included, so the prompt plus `TB style` reproduce a
generation; `TB base parameters` / `TB refiner parameters` record the final per-stage values as a check.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from ..stage_params import GenerationSettings, StageParams
from .apply import RandomSource, apply_inline_prompt
from .grammar import parse_inline_prompt
from .sampler_names import a1111_sampler_name
from .sizes import image_size

TB_STYLE = "TB style"
TB_BASE_PARAMETERS = "TB base parameters"
TB_REFINER_PARAMETERS = "TB refiner parameters"

# TB parameter name → StageParams field (the first seven are what the reference writes).
_TB_FIELDS: dict[str, str] = {
    "sampler_name": "sampler", "scheduler": "scheduler", "steps": "steps", "start_at_step": "steps_start",
    "end_at_step": "steps_end", "cfg": "cfg", "noise_seed": "noise_seed",
    "steps_nfactor": "steps_nfactor", "extra_noise": "extra_noise",
}
_INT_FIELDS = {"steps", "steps_start", "steps_end", "noise_seed", "steps_nfactor"}
_FLOAT_FIELDS = {"cfg", "extra_noise"}

# A1111's own pattern for one `Key: value` pair of the last infotext line (values may be JSON-quoted).
_PARAM_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RANDOM_SEED_ARG = re.compile(r"(?P<name>seed|s)(?P<gap>\s+)(?:random|-1)(?P<tail>\s*)", re.IGNORECASE)
_SIZE = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*", re.IGNORECASE | re.ASCII)


# -- writing ------------------------------------------------------------------------------------------------------

def format_number(value: float | int) -> str:
    """A clean decimal: 3.2 not 3.1999999999999997; floats keep one decimal (2.0), like Python's repr."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    cleaned = round(float(value), 6)
    return repr(cleaned + 0.0)  # + 0.0 turns -0.0 into 0.0


def effective_end(stage: StageParams) -> int:
    """The step the stage stops at: a negative end counts from the last step (§5.3), never past `steps`."""
    end = stage.steps_end if stage.steps_end >= 0 else stage.steps + stage.steps_end
    return min(stage.steps, end)


def stage_step_count(stage: StageParams) -> int:
    return max(0, effective_end(stage) - stage.steps_start)


def format_stage_parameters(stage: StageParams) -> str:
    """`sampler_name:…, scheduler:…, steps:…, start_at_step:…, end_at_step:…, cfg:…, noise_seed:…`."""
    return (f"sampler_name:{stage.sampler.strip()}, scheduler:{stage.scheduler.strip()}, steps:{int(stage.steps)}, "
            f"start_at_step:{int(stage.steps_start)}, end_at_step:{effective_end(stage)}, "
            f"cfg:{format_number(stage.cfg)}, noise_seed:{int(stage.noise_seed)}")


def tb_infotext_fields(settings: GenerationSettings) -> dict[str, str]:
    """The three TinyBreaker infotext fields, in order (`TB style` only when a style is set)."""
    fields: dict[str, str] = {}
    if settings.style:
        fields[TB_STYLE] = settings.style
    fields[TB_BASE_PARAMETERS] = format_stage_parameters(settings.base)
    fields[TB_REFINER_PARAMETERS] = format_stage_parameters(settings.refiner)
    return fields


def infotext_parameters(settings: GenerationSettings, *, width: int | None = None, height: int | None = None,
                        model: str | None = None, resolution: int = 1024) -> dict[str, str]:
    """Every `Key: value` field the reference writes, in its order. The size defaults to the computed base size."""
    if width is None or height is None:
        width, height = settings_image_size(settings, resolution)
    fields: dict[str, str] = {
        "Steps": str(stage_step_count(settings.base) + stage_step_count(settings.refiner)),
    }
    sampler = a1111_sampler_name(settings.base.sampler, settings.base.scheduler)
    if sampler:
        fields["Sampler"] = sampler
    fields["CFG scale"] = format_number(settings.base.cfg)
    fields["Seed"] = str(int(settings.base.noise_seed))
    fields["Size"] = f"{width}x{height}"
    if model:
        fields["Model"] = os.path.splitext(os.path.basename(model))[0]
    fields.update(tb_infotext_fields(settings))
    return fields


def quote_infotext_value(value: object) -> str:
    """JSON-quotes a value containing `,`, `:` or a newline, as A1111 and the reference do."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(settings: GenerationSettings, *, width: int | None = None, height: int | None = None,
                    model: str | None = None, negative: str = "", resolution: int = 1024) -> str:
    """The whole infotext: the inline prompt (with `--seed random` replaced by the seed used), an optional
    `Negative prompt:` line, then the fields."""
    prompt = resolve_random_seed(settings.prompt, settings.base.noise_seed)
    fields = infotext_parameters(settings, width=width, height=height, model=model, resolution=resolution)
    last_line = ", ".join(f"{key}: {quote_infotext_value(value)}" for key, value in fields.items())
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{last_line}".strip()


def resolve_random_seed(text: str, seed: int) -> str:
    """`text` with each `--seed random` / `--s random` (and `-1`) argument replaced by `seed`, all else kept."""
    prompt, *chunks = (text or "").split("--")
    for index, chunk in enumerate(chunks):
        match = _RANDOM_SEED_ARG.fullmatch(chunk)
        if match:
            chunks[index] = f"{match['name']}{match['gap']}{int(seed)}{match['tail']}"
    return "--".join([prompt, *chunks])


def settings_image_size(settings: GenerationSettings, resolution: int = 1024) -> tuple[int, int]:
    image = settings.image
    return image_size(image.aspect_ratio, image.orientation, image.scale, resolution)


# -- reading ------------------------------------------------------------------------------------------------------

def parse_infotext_line(line: str) -> dict[str, str]:
    """`Key: value, Key: "quoted, value"` → {key: value}, quoted values unquoted (A1111's reading)."""
    params: dict[str, str] = {}
    for key, value in _PARAM_PAIR.findall(line or ""):
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = str(json.loads(value))
            except ValueError:
                pass
        params[key.strip()] = value
    return params


def parse_infotext(text: str) -> dict[str, str]:
    """A whole infotext → its fields plus "Prompt" and "Negative prompt", the way A1111 splits it: the last line
    holds the fields when it has at least three pairs; lines after `Negative prompt:` form the negative."""
    *lines, last_line = (text or "").strip().split("\n")
    if len(_PARAM_PAIR.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    params = parse_infotext_line(last_line)
    params["Prompt"] = "\n".join(prompt_lines)
    params["Negative prompt"] = "\n".join(negative_lines)
    return params


def parse_stage_parameters(text: str) -> tuple[dict[str, object], list[str]]:
    """`sampler_name:…, steps:…` → ({StageParams field: value}, warnings)."""
    values: dict[str, object] = {}
    warnings: list[str] = []
    for part in (text or "").split(","):
        name, separator, raw = part.partition(":")
        name, raw = name.strip(), raw.strip()
        if not separator or not name:
            continue
        field_name = _TB_FIELDS.get(name)
        if field_name is None:
            warnings.append(f"unknown TB parameter {name!r} (ignored)")
            continue
        try:
            if field_name in _INT_FIELDS:
                values[field_name] = int(raw)
            elif field_name in _FLOAT_FIELDS:
                values[field_name] = float(raw)
            else:
                values[field_name] = raw
        except ValueError:
            warnings.append(f"TB parameter {name}: cannot read {raw[:40]!r} (ignored)")
    return values, warnings


@dataclass
class InfotextSettings:
    """What a TinyBreaker infotext says, before it is turned back into settings (None: not given)."""

    prompt: str | None = None
    negative: str | None = None
    style: str | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    base: dict[str, object] = field(default_factory=dict)
    refiner: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_tinybreaker(self) -> bool:
        return bool(self.style or self.base or self.refiner)


def parse_tb_infotext(params: dict[str, str]) -> InfotextSettings:
    """Reads the fields of an infotext (as `parse_infotext` or A1111's parser give them; "Size" or "Size-1"/"Size-2")."""
    result = InfotextSettings(prompt=params.get("Prompt"), negative=params.get("Negative prompt"),
                              style=(params.get(TB_STYLE) or "").strip() or None, model=params.get("Model"))
    seed_text = params.get("Seed")
    if seed_text is not None:
        try:
            result.seed = int(str(seed_text).strip())
        except ValueError:
            result.warnings.append(f"Seed: cannot read {str(seed_text)[:40]!r} (ignored)")
    size = _SIZE.fullmatch(str(params.get("Size", "")))
    if size:
        result.width, result.height = int(size.group(1)), int(size.group(2))
    elif "Size-1" in params and "Size-2" in params:
        try:
            result.width, result.height = int(params["Size-1"]), int(params["Size-2"])
        except ValueError:
            result.warnings.append("Size: cannot read the width and height (ignored)")
    for key, stage in ((TB_BASE_PARAMETERS, "base"), (TB_REFINER_PARAMETERS, "refiner")):
        if key in params:
            values, warnings = parse_stage_parameters(params[key])
            setattr(result, stage, values)
            result.warnings.extend(f"{key}: {warning}" for warning in warnings)
    return result


def restore_settings(info: InfotextSettings, styles=None, *, start: GenerationSettings | None = None,
                     rng: RandomSource | None = None, warnings: list[str] | None = None) -> GenerationSettings:
    """The settings of a recorded generation: the style, then the prompt's inline arguments, then the recorded
    seed and stage values wherever they differ (say, a style changed since); differences are reported in
    `warnings`. The result holds final values: use it as it is rather than re-parsing its prompt."""
    notes = warnings if warnings is not None else []
    notes.extend(info.warnings)
    settings = start if start is not None else GenerationSettings()
    if info.style:
        resolved = styles.resolve_name(info.style) if styles is not None else None
        if resolved is None:
            notes.append(f"{TB_STYLE}: style {info.style!r} is not available; using the recorded values")
        else:
            settings = styles.apply(settings, resolved)
    settings = apply_inline_prompt(settings, parse_inline_prompt(info.prompt or ""), styles, rng=rng,
                                   warnings=notes)
    recorded_seed = info.base.get("noise_seed", info.seed)
    if recorded_seed is not None:
        settings.base.noise_seed = int(recorded_seed)
    for stage_name, recorded in (("base", info.base), ("refiner", info.refiner)):
        _restore_stage(stage_name, settings.stage(stage_name), recorded, notes)
    if info.width and info.height and (info.width, info.height) != settings_image_size(settings):
        notes.append(f"Size: recorded {info.width}x{info.height}, the settings give "
                     "{}x{}".format(*settings_image_size(settings)))
    settings.prompt = resolve_random_seed(settings.prompt, settings.base.noise_seed)
    return settings


def _restore_stage(stage_name: str, stage: StageParams, recorded: dict[str, object], notes: list[str]) -> None:
    for field_name, value in recorded.items():
        current = getattr(stage, field_name)
        if field_name == "steps_end":
            # the record holds min(steps, end); keep our end when it stops at the same step
            steps = int(recorded.get("steps", stage.steps))
            if min(steps, effective_end(stage)) == value:
                continue
        elif field_name in _FLOAT_FIELDS:
            if abs(float(current) - float(value)) <= 0.005:  # the reference records cfg to 2 decimals
                continue
        elif current == value:
            continue
        if (stage_name, field_name) != ("base", "noise_seed"):  # the base seed may have been random
            notes.append(f"{stage_name}.{field_name}: recorded {value!r}, the style and prompt give {current!r}; "
                         "using the recorded value")
        setattr(stage, field_name, value)

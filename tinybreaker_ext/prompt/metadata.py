"""Infotext (A1111 "parameters" text) written and read the way ComfyUI-TinyBreaker's Save Image does
(docs/numerics.md "Infotext and sampler names").

The prompt line keeps the whole inline prompt, arguments included, so the prompt plus `TB style` reproduce a
generation; `TB base parameters` / `TB refiner parameters` record the final per-stage values as a check.
"""

from __future__ import annotations

import json
import re

from ..stage_params import StageParams

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

_RANDOM_SEED_ARG = re.compile(r"(?P<name>seed|s)(?P<gap>\s+)(?:random|-1)(?P<tail>\s*)", re.IGNORECASE)


# -- writing ------------------------------------------------------------------------------------------------------

def format_number(value: float | int) -> str:
    """A clean decimal: 3.2 not 3.1999999999999997; floats keep one decimal (2.0), like Python's repr."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    cleaned = round(float(value), 6)
    return repr(cleaned + 0.0)  # + 0.0 turns -0.0 into 0.0


def effective_end(stage: StageParams) -> int:
    """The step the stage stops at: a negative end counts from the last step, never past `steps`
    (docs/numerics.md "Step windows")."""
    end = stage.steps_end if stage.steps_end >= 0 else stage.steps + stage.steps_end
    return min(stage.steps, end)


def format_stage_parameters(stage: StageParams) -> str:
    """`sampler_name:…, scheduler:…, steps:…, start_at_step:…, end_at_step:…, cfg:…, noise_seed:…`."""
    return (f"sampler_name:{stage.sampler.strip()}, scheduler:{stage.scheduler.strip()}, steps:{int(stage.steps)}, "
            f"start_at_step:{int(stage.steps_start)}, end_at_step:{effective_end(stage)}, "
            f"cfg:{format_number(stage.cfg)}, noise_seed:{int(stage.noise_seed)}")


def quote_infotext_value(value: object) -> str:
    """JSON-quotes a value containing `,`, `:` or a newline, as A1111 and the reference do."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def resolve_random_seed(text: str, seed: int) -> str:
    """`text` with each `--seed random` / `--s random` (and `-1`) argument replaced by `seed`, all else kept."""
    prompt, *chunks = (text or "").split("--")
    for index, chunk in enumerate(chunks):
        match = _RANDOM_SEED_ARG.fullmatch(chunk)
        if match:
            chunks[index] = f"{match['name']}{match['gap']}{int(seed)}{match['tail']}"
    return "--".join([prompt, *chunks])


# -- reading ------------------------------------------------------------------------------------------------------

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

"""Reading a whole infotext back, the way A1111 does: the tests' check of what the product writes (the product
itself reads only the TB parameter values, ``tinybreaker_ext.infotext.parse_stage_parameters``)."""

from __future__ import annotations

import json
import re

# A1111's own pattern for one `Key: value` pair of the last infotext line (values may be JSON-quoted).
PARAM_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_infotext_line(line: str) -> dict[str, str]:
    """`Key: value, Key: "quoted, value"` → {key: value}, quoted values unquoted (A1111's reading)."""
    params: dict[str, str] = {}
    for key, value in PARAM_PAIR.findall(line or ""):
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
    if len(PARAM_PAIR.findall(last_line)) < 3:
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

"""The script's positional argument list: what the WebUI's UI (and a queue tool) sends, the inverse of
``tinybreaker_ext.params.from_script_args``."""

from __future__ import annotations

from tinybreaker_ext.params import FIELD_NAMES, TinyBreakerParams


def script_args(values: TinyBreakerParams) -> list:
    return [getattr(values, name) for name in FIELD_NAMES]

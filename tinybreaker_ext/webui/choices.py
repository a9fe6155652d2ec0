"""Choices for the accordion's dropdowns, read from disk when the UI is built or refreshed."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def control_choices(field_name: str) -> list[str]:
    try:
        if field_name == "style":
            from .styles_source import style_names

            return style_names()
        if field_name == "upscale_model":
            from .api import upscale_model_choices

            return upscale_model_choices()
        from .api import dynamic_choices

        return [name for name in dynamic_choices().get(field_name, []) if name]
    except Exception as error:  # an unreadable folder must not break the whole txt2img tab
        log.warning("TinyBreaker: could not list %s choices: %s", field_name, error)
        return []

"""Callback registration, called once from the script file (and again after a UI reload)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register_callbacks() -> None:
    from modules import script_callbacks

    from .api import register_routes
    from .infotext import translate_pasted
    from .settings import register_settings

    script_callbacks.on_ui_settings(register_settings)
    script_callbacks.on_app_started(lambda _demo, app: register_routes(app))
    script_callbacks.on_before_ui(add_xyz_axes)
    script_callbacks.on_script_unloaded(release_models)
    script_callbacks.on_infotext_pasted(translate_pasted)


def add_xyz_axes() -> None:
    from .xyz import add_axes

    if not add_axes():
        log.info("TinyBreaker: XYZ plot script not found; no axes added")


def release_models() -> None:
    from ..pipeline import release_pipelines

    release_pipelines()

"""The style library the WebUI uses: built-in styles, then the user's own folder (``<TinyBreaker folder>/styles``,
where "Save as style" writes) and the folders from Settings (a ComfyUI-TinyBreaker install's styles folder works as
it is); reloaded when a folder or one of its files changes."""

from __future__ import annotations

import glob
import os
import re

from . import locations

USER_STYLES_FILE = "my_styles.ini"
_STYLE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_cache: dict[tuple, object] = {}


def user_styles_dir() -> str:
    return os.path.join(locations.tinybreaker_dir(), "styles")


def style_library():
    from ..prompt.styles import StyleLibrary

    dirs = locations.unique_existing([user_styles_dir(), *locations.style_dirs()])
    key = tuple((folder, tuple((path, os.path.getmtime(path))
                               for path in sorted(glob.glob(os.path.join(folder, "*.ini"))))) for folder in dirs)
    if key not in _cache:
        _cache.clear()
        library = StyleLibrary.load_builtin()
        for directory in dirs:
            library.load_dir(directory)
        _cache[key] = library
    return _cache[key]


def style_names() -> list[str]:
    return list(style_library().names())


def save_style(name: str, fields) -> str:
    """Writes the stages ``fields`` give (the selected style with the accordion's values on top) as style ``name``
    into the user's styles file; returns its path. Built-in names are refused."""
    from ..errors import ParameterError
    from ..plan import ImageRequest, make_plan
    from ..prompt.style_ini import format_style_section, replace_section
    from ..prompt.styles import StyleLibrary
    from ..sampling.schedules import step_window

    name = (name or "").strip()
    if not _STYLE_NAME.fullmatch(name):
        raise ParameterError("style name", f"{name!r}: use 1 to 40 letters, digits, '_' or '-'")
    if StyleLibrary.load_builtin().resolve_name(name) is not None:
        raise ParameterError("style name", f"{name!r} is a built-in style; choose another name")
    plan = make_plan(fields, ImageRequest("", width=1024, height=1024, seed=0), style_library())
    steps, start, end = step_window(plan.refine.steps, plan.refine.steps_start, plan.refine.steps_end,
                                    plan.refine.steps_nfactor)
    stages = {"base": plan.base.copy(noise_seed=1),
              "refiner": plan.refine.copy(steps=steps, steps_start=start, steps_end=end, steps_nfactor=0),
              "upscaler": plan.upscaler}
    folder = user_styles_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, USER_STYLES_FILE)
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else ""
    with open(path, "w", encoding="utf-8") as file:
        file.write(replace_section(text, name, format_style_section(name, stages)))
    return path

"""Where the host keeps our files (docs/hosts.md "File names"), our settings, the txt2img size step, and the style
library: built-in styles, then ``<TinyBreaker folder>/styles`` (where "Save as style" writes) and the folders from
Settings, reloaded when a folder or one of its files changes."""

from __future__ import annotations

import glob
import os
import re

SETTING_EXTRA_DIRS = "tinybreaker_extra_dirs"
SETTING_T5_MODE = "tinybreaker_t5_mode"
SETTING_DTYPE = "tinybreaker_compute_dtype"
SETTING_STYLE_DIRS = "tinybreaker_style_dirs"
SETTING_COMPILE = "tinybreaker_compile_pixart"
USER_STYLES_FILE = "my_styles.ini"
_STYLE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_style_cache: dict[tuple, object] = {}
_size_step = [8]  # the txt2img width slider's step, read when the UI is built (A1111: 8, Forge Neo: 64)


def remember_size_step(step) -> None:
    _size_step[0] = max(int(step), 8)


def size_step() -> int:
    return _size_step[0]


def option(key: str, default):
    """Settings may be read before the UI registered them (--nowebui), so never assume a key exists."""
    from modules import shared

    return shared.opts.data.get(key, default)


def tinybreaker_dir() -> str:
    from modules import paths, shared

    configured = getattr(shared.cmd_opts, "tinybreaker_dir", None)
    return configured or os.path.join(paths.models_path, "TinyBreaker")


def model_dirs() -> list[str]:
    """Existing folders searched for checkpoints and T5 files, most specific first."""
    from modules import paths

    dirs = [tinybreaker_dir()]
    dirs += split_dirs(option(SETTING_EXTRA_DIRS, ""))
    dirs += [os.path.join(paths.models_path, name) for name in ("text_encoder", "CLIP", "t5")]
    return unique_existing(dirs)


def tokenizer_search() -> dict:
    """Where the T5 tokenizer is looked for: the model folders, then the copies the hosts ship in-tree (reForge,
    Forge), found relative to the WebUI's root."""
    from modules import paths

    from ..models.t5_tokenizer import host_tokenizer_dirs

    host_dirs = host_tokenizer_dirs(getattr(paths, "script_path", os.getcwd()))
    return {"models_dirs": model_dirs(), "host_dirs": unique_existing(host_dirs)}


def split_dirs(text: str) -> list[str]:
    parts = [part.strip().strip('"') for chunk in str(text or "").splitlines() for part in chunk.split(";")]
    return [os.path.expanduser(part) for part in parts if part]


def unique_existing(dirs: list[str]) -> list[str]:
    seen, result = set(), []
    for directory in dirs:
        real = os.path.realpath(directory)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            result.append(directory)
    return result


def user_styles_dir() -> str:
    return os.path.join(tinybreaker_dir(), "styles")


def style_library():
    from ..prompt.styles import StyleLibrary

    dirs = unique_existing([user_styles_dir(), *split_dirs(option(SETTING_STYLE_DIRS, ""))])
    key = tuple((folder, tuple((path, os.path.getmtime(path))
                               for path in sorted(glob.glob(os.path.join(folder, "*.ini"))))) for folder in dirs)
    if key not in _style_cache:
        _style_cache.clear()
        library = StyleLibrary.load_builtin()
        for directory in dirs:
            library.load_dir(directory)
        _style_cache[key] = library
    return _style_cache[key]


def style_names() -> list[str]:
    return list(style_library().names())


def save_style(name: str, fields) -> str:
    """Writes the stages ``fields`` give (the selected style with the accordion's values on top) as style ``name``
    into the user's styles file; returns its path. Built-in names are refused."""
    from ..errors import ParameterError
    from ..plan import ImageRequest, make_plan
    from ..prompt.styles import StyleLibrary, format_style_section, replace_section
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

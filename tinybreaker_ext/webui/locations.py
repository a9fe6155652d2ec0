"""Where the host keeps our files (docs/hosts.md "File names"), our settings, and the txt2img size step."""

from __future__ import annotations

import os

SETTING_EXTRA_DIRS = "tinybreaker_extra_dirs"
SETTING_T5_MODE = "tinybreaker_t5_mode"
SETTING_DTYPE = "tinybreaker_compute_dtype"
SETTING_STYLE_DIRS = "tinybreaker_style_dirs"
SETTING_COMPILE = "tinybreaker_compile_pixart"
_size_step = [8]  # the txt2img width slider's step, read when the UI is built (A1111: 8, Forge Neo: 64)


def remember_size_step(step) -> None:
    _size_step[0] = max(int(step), 8)  # the width slider's step (the UI passes 8 when it has none)


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


def host_tokenizer_dirs() -> list[str]:
    """T5 tokenizer copies the hosts ship in-tree (reForge, Forge), found relative to the WebUI's root."""
    from modules import paths

    from ..models.t5_tokenizer import host_tokenizer_dirs as t5_host_dirs

    return unique_existing(t5_host_dirs(getattr(paths, "script_path", os.getcwd())))


def style_dirs() -> list[str]:
    return unique_existing(split_dirs(option(SETTING_STYLE_DIRS, "")))


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

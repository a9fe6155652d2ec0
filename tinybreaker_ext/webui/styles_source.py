"""The style library the WebUI uses: built-in styles, then user folders from Settings (a ComfyUI-TinyBreaker
install's styles folder works as it is); reloaded when the folder setting changes."""

from __future__ import annotations

from . import locations

_cache: dict[tuple, object] = {}


def style_library():
    from ..prompt.styles import StyleLibrary

    key = tuple(locations.style_dirs())
    if key not in _cache:
        _cache.clear()
        library = StyleLibrary.load_builtin()
        for directory in key:
            library.load_dir(directory)
        _cache[key] = library
    return _cache[key]


def style_names() -> list[str]:
    return list(style_library().names())

"""Which WebUI we run in, decided once by feature detection (never by version strings alone)."""

from __future__ import annotations

import importlib.util

from .host_base import HostAdapter

_adapter: HostAdapter | None = None


def detect_host() -> str:
    """'forge' (backend package), 'reforge' (ldm_patched + modules_forge) or 'a1111'."""
    if _has_module("backend.memory_management") and _has_module("modules_forge"):
        return "forge"
    if _has_module("ldm_patched.modules.model_management"):
        return "reforge"
    return "a1111"


def get_host() -> HostAdapter:
    global _adapter
    if _adapter is None:
        _adapter = make_host(detect_host())
    return _adapter


def make_host(name: str) -> HostAdapter:
    if name == "forge":
        from .host_forge import ForgeHost

        return ForgeHost()
    if name == "reforge":
        from .host_reforge import ReForgeHost

        return ReForgeHost()
    from .host_a1111 import A1111Host

    return A1111Host()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False

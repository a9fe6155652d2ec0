"""Which WebUI we run in, decided once by capability (docs/hosts.md, "Host detection"): a host whose memory manager
module offers ``load_models_gpu``, ``free_memory`` and ``get_torch_device`` beside a ``ModelPatcher`` class gets the
managed adapter (Forge and Forge Neo: ``backend``; reForge and Forge Classic: ``ldm_patched``), named after its
``modules_forge.forge_version``; anything else gets A1111's manual moves. What each manager's functions accept is
read from their signatures by the adapter itself."""

from __future__ import annotations

import importlib

from .host_base import HostAdapter

_adapter: HostAdapter | None = None

# (memory manager module, module holding ModelPatcher), newest family first.
MANAGERS = (("backend.memory_management", "backend.patcher.base"),
            ("ldm_patched.modules.model_management", "ldm_patched.modules.model_patcher"))
MANAGER_FUNCTIONS = ("load_models_gpu", "free_memory", "get_torch_device")


def get_host() -> HostAdapter:
    global _adapter
    if _adapter is None:
        _adapter = detect_host()
    return _adapter


def detect_host() -> HostAdapter:
    for manager_name, patcher_module_name in MANAGERS:
        manager, patcher_module = _import(manager_name), _import(patcher_module_name)
        patcher_class = getattr(patcher_module, "ModelPatcher", None)
        if manager is not None and patcher_class is not None and all(
                callable(getattr(manager, name, None)) for name in MANAGER_FUNCTIONS):
            from .host_managed import ManagedHost

            return ManagedHost(host_family(manager_name), manager, patcher_class)
    from .host_a1111 import A1111Host

    return A1111Host()


def forge_version() -> str:
    version = _import("modules_forge.forge_version")
    return str(getattr(version, "version", "") or "")


def host_family(manager_name: str) -> str:
    """forge, neo, classic or reforge, from ``forge_version`` ("neo…", "classic", "2.x…", "1.0.0v2…")."""
    version = forge_version().lower()
    if version.startswith("neo"):
        return "neo"
    if version.startswith("classic"):
        return "classic"
    return "forge" if manager_name.startswith("backend") else "reforge"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not this host (ImportError), or a host module that fails to import outside its host
        return None

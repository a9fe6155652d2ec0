"""Run by the WebUI at every start (and after an install from URL): installs only what is missing.

Rules: never upgrade or downgrade anything already installed (the host pins its packages and reinstalls them when
they drift); every pip call is constrained to the versions installed right now, so pip can only add packages;
``--skip-install`` is honoured; what was done is printed in one line per package.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from importlib import metadata

EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS_FILE = os.path.join(EXTENSION_DIR, "requirements.txt")
TAG = "[TinyBreaker]"


def read_requirements(path: str | None = None) -> list[str]:
    lines = []
    with open(path or REQUIREMENTS_FILE, encoding="utf-8") as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                lines.append(line)
    return lines


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_constraints() -> list[str]:
    """``name==version`` for every distribution in this environment: passed to pip as constraints."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and dist.version:
            pins[name.lower()] = f"{name}=={dist.version}"
    return sorted(pins.values())


def plan(requirements: list[str]) -> tuple[list[str], list[str]]:
    """(requirements to install, messages about the ones already present)."""
    missing, present = [], []
    for requirement in requirements:
        name = requirement_name(requirement)
        version = installed_version(name)
        if version is None:
            missing.append(requirement)
        else:
            present.append(f"{name} {version} already installed (left as it is)")
    return missing, present


def install(missing: list[str], run_pip) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as constraints:
        constraints.write("\n".join(installed_constraints()) + "\n")
    try:
        quoted = " ".join(f'"{requirement}"' for requirement in missing)
        run_pip(f'install {quoted} -c "{constraints.name}"', f"{TAG} requirements: {', '.join(missing)}")
    finally:
        os.unlink(constraints.name)


def skip_install_requested() -> bool:
    try:
        import launch  # the WebUI's launcher module; present when the host runs this file
    except ImportError:
        return "--skip-install" in sys.argv
    return bool(getattr(getattr(launch, "args", None), "skip_install", False))


def main() -> int:
    missing, present = plan(read_requirements())
    for message in present:
        print(f"{TAG} {message}")
    if not missing:
        print(f"{TAG} nothing to install")
        return 0
    if skip_install_requested():
        print(f"{TAG} --skip-install: not installing {', '.join(missing)}; TinyBreaker needs them to run")
        return 0
    try:
        from launch import run_pip
    except ImportError:  # run by hand outside a WebUI
        import subprocess

        def run_pip(command: str, desc: str) -> None:
            print(desc)
            subprocess.run(f'"{sys.executable}" -m pip {command}', shell=True, check=True)
    install(missing, run_pip)
    print(f"{TAG} installed: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

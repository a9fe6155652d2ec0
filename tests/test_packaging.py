"""pyproject.toml: one `pip install .` gives the `tinybreaker` command with the styles and every dependency."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def requirement_names(*files: str) -> set[str]:
    names = set()
    for name in files:
        for line in open(os.path.join(REPO, name), encoding="utf-8"):
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return names


def test_the_wheel_has_the_command_the_package_data_and_the_dependencies(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    source = tmp_path / "source"
    shutil.copytree(os.path.join(REPO, "tinybreaker_ext"), source / "tinybreaker_ext",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-cli.txt", "requirements-test.txt"):
        shutil.copy(os.path.join(REPO, name), source / name)
    completed = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr
    wheel, = (tmp_path / "wheel").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "[console_scripts]\ntinybreaker = tinybreaker_ext.cli:main" in entry_points
    assert {"tinybreaker_ext/styles/styles_v03.ini", "tinybreaker_ext/styles/order.conf",
            "tinybreaker_ext/cli.py", "tinybreaker_ext/webui/api.py"} <= set(names)
    required = {re.split(r"[<>=!~; ]", line[len("Requires-Dist: "):], maxsplit=1)[0].lower()
                for line in metadata.splitlines() if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    assert required == requirement_names("requirements.txt", "requirements-cli.txt") >= {"torch", "diffusers"}
    from tinybreaker_ext import __version__

    assert f"\nVersion: {__version__}\n" in metadata


def test_the_readme_installs_with_one_pip_command_and_tests_with_one_more():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    command_line = readme.split("## Command line", 1)[1]
    assert re.search(r"```bash\npip install \.\s", command_line)
    tests = readme.split("## Tests", 1)[1]
    assert 'pip install ".[test]"' in tests and "python -m pytest" in tests

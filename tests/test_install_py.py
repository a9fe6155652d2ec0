"""install.py: installs only what is missing, never changes an installed version, honours --skip-install.

The fast tests load install.py in-process with a stand-in ``launch`` module; the slow one runs it the way the
hosts do (``"<python>" "<ext>/install.py"`` with PYTHONPATH=<webui root>, a ``launch.py`` there providing
``run_pip`` and ``args``) in a real isolated venv against PyPI.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import types
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_PY = os.path.join(ROOT, "install.py")


def load_install_module():
    spec = importlib.util.spec_from_file_location("tinybreaker_install", INSTALL_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def install(monkeypatch, tmp_path):
    module = load_install_module()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# what the core needs\ntqdm>=999  # present: left alone even if older\n"
                            "--extra-index-url https://example.invalid\n\n"
                            "tinybreaker-surely-missing-package[extra]>=1.0 ; python_version >= '3'\n",
                            encoding="utf-8")
    monkeypatch.setattr(module, "REQUIREMENTS_FILE", str(requirements))
    return module


def fake_launch(monkeypatch, skip_install=False):
    commands = []

    def run_pip(command, desc=None, live=True):
        if launch.args.skip_install:  # what A1111's launch_utils.run_pip does first
            return
        commands.append((command, desc))

    launch = types.ModuleType("launch")
    launch.args = types.SimpleNamespace(skip_install=skip_install)
    launch.run_pip = run_pip
    monkeypatch.setitem(sys.modules, "launch", launch)
    return commands


def test_requirements_file_parsing(install):
    assert install.read_requirements() == ["tqdm>=999",
                                           "tinybreaker-surely-missing-package[extra]>=1.0 ; python_version >= '3'"]
    assert [install.requirement_name(r) for r in install.read_requirements()] == [
        "tqdm", "tinybreaker-surely-missing-package"]


def test_only_missing_packages_are_installed_with_every_installed_version_pinned(install, monkeypatch, capsys):
    seen_constraints = []
    commands = fake_launch(monkeypatch)

    original_install = install.install

    def spying_install(missing, run_pip):
        def run_pip_reading_constraints(command, desc):
            path = command.split(" -c ", 1)[1].strip().strip('"')
            with open(path, encoding="utf-8") as file:
                seen_constraints.extend(file.read().split())
            run_pip(command, desc)

        original_install(missing, run_pip_reading_constraints)

    monkeypatch.setattr(install, "install", spying_install)
    assert install.main() == 0
    ((command, _desc),) = commands
    assert command.startswith('install "tinybreaker-surely-missing-package[extra]>=1.0')
    assert "tqdm" not in command.split(" -c ")[0]
    assert f"tqdm=={metadata.version('tqdm')}" in seen_constraints  # pip may not move it
    assert f"torch=={metadata.version('torch')}" in seen_constraints
    output = capsys.readouterr().out
    assert f"tqdm {metadata.version('tqdm')} already installed" in output


def test_skip_install_installs_nothing(install, monkeypatch, capsys):
    commands = fake_launch(monkeypatch, skip_install=True)
    assert install.main() == 0
    assert commands == []
    assert "--skip-install" in capsys.readouterr().out


def test_nothing_missing_means_no_pip_call(install, monkeypatch, tmp_path, capsys):
    (tmp_path / "requirements.txt").write_text("tqdm\ntorch\n", encoding="utf-8")
    commands = fake_launch(monkeypatch)
    assert install.main() == 0
    assert commands == [] and "nothing to install" in capsys.readouterr().out


LAUNCH_PY = '''
"""Stand-in for the WebUI's launch.py: run_pip and args as modules/launch_utils.py defines them."""
import argparse, os, subprocess, sys

parser = argparse.ArgumentParser()
parser.add_argument("--skip-install", action="store_true")
args, _ = parser.parse_known_args()
python = sys.executable
index_url = os.environ.get("INDEX_URL", "")


def run(command, desc=None, errdesc=None, custom_env=None, live=True):
    if desc:
        print(desc)
    result = subprocess.run(command, shell=True, env=custom_env or os.environ)
    if result.returncode != 0:
        raise RuntimeError(f"{errdesc or 'Error running command'}. Command: {command}")


def run_pip(command, desc=None, live=True):
    if args.skip_install:
        return
    with open(os.environ["TB_PIP_LOG"], "a", encoding="utf-8") as log:
        log.write(command + "\\n")
    index_url_line = f" --index-url {index_url}" if index_url != "" else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index_url_line}', desc=f"Installing {desc}",
               errdesc=f"Couldn't install {desc}", live=live)
'''


@pytest.mark.slow
def test_in_an_isolated_venv_the_way_the_hosts_run_it(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip_quiet = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
    baseline = subprocess.run(pip_quiet + ["install", "tqdm==4.60.0"], capture_output=True, text=True)
    if baseline.returncode != 0 and "Could not find a version" not in baseline.stderr:
        pytest.skip(f"PyPI not reachable from here: {baseline.stderr.strip().splitlines()[-1:]}")
    assert baseline.returncode == 0, baseline.stderr

    webui = tmp_path / "webui"  # the WebUI root: launch.py lives here
    webui.mkdir()
    (webui / "launch.py").write_text(textwrap.dedent(LAUNCH_PY), encoding="utf-8")
    extension = webui / "extensions" / "tinybreaker"
    extension.mkdir(parents=True)
    shutil.copy(INSTALL_PY, extension / "install.py")
    # Small pure-python stand-ins for the real requirements (which need torch): one present but older than
    # asked for, one missing.
    (extension / "requirements.txt").write_text("tqdm>=4.66\nsix\n", encoding="utf-8")
    pip_log = tmp_path / "pip.log"
    pip_log.write_text("", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(webui), "TB_PIP_LOG": str(pip_log), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def freeze():
        return subprocess.run(pip_quiet + ["freeze", "--all"], capture_output=True, text=True, check=True).stdout

    def run_installer(*flags):
        result = subprocess.run([python, str(extension / "install.py"), *flags], cwd=webui, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    before = freeze()
    assert "tqdm==4.60.0" in before and "six==" not in before

    output = run_installer("--skip-install")
    assert "--skip-install" in output
    assert freeze() == before and pip_log.read_text() == ""

    output = run_installer()
    after_first = freeze()
    assert "tqdm==4.60.0" in after_first  # never upgraded, although the requirement asks for >=4.66
    assert "six==" in after_first
    added = set(after_first.splitlines()) - set(before.splitlines())
    assert {line.split("==")[0] for line in added} == {"six"}
    (command,) = pip_log.read_text().splitlines()
    assert '"six"' in command and "tqdm" not in command.split(" -c ")[0]
    assert "tqdm 4.60.0 already installed" in output

    output = run_installer()
    assert freeze() == after_first
    assert len(pip_log.read_text().splitlines()) == 1
    assert "nothing to install" in output

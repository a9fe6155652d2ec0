"""Pytest fixtures of the prompt area: the built-in style library and small style folders."""

from __future__ import annotations

import random

import pytest

from tinybreaker_ext.prompt.styles import StyleLibrary

# A small style text in the INI format of docs/numerics.md "Styles", with wording that tests can predict.
SMALL_STYLES = """
base.prompt      = "Base of{. $@}"
base.negative    = "bad base{, $@}"
base.sampler     = "uni_pc"
base.scheduler   = "simple"
base.steps       = 12
base.steps_start = 2
base.cfg         = 3.4
refiner.prompt   = "Refined{, $@}"
refiner.negative = "bad refiner{. $@}"
refiner.steps    = 11
refiner.steps_start = 6
refiner.cfg      = 2.0
upscaler.extra_noise = 0.6

[PLAIN]

[FANCY]
base.prompt = "Fancy {$@} art"
base.cfg    = 4.5

[FANCIER:FANCY]
base.steps = 20
"""


def write_style_dir(folder, files: dict[str, str]):
    """Writes `files` (name → text) into `folder`; usable outside pytest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def builtin_styles() -> StyleLibrary:
    return StyleLibrary.load_builtin()


@pytest.fixture
def small_styles() -> StyleLibrary:
    return StyleLibrary().load_text(SMALL_STYLES, source="small.ini")


@pytest.fixture
def seeded_rng() -> random.Random:
    return random.Random(1234)

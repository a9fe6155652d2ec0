"""Where diffusers is missing (A1111), the embedded refiner and KL decoder fail with one clear instruction."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tinybreaker_ext.errors import TinyBreakerError
from tinybreaker_ext.models.kl_decoder import load_kl_decoder
from tinybreaker_ext.models.sd1_refiner import SD1Refiner
from tinybreaker_ext.models.sdxl_refiner import SDXLRefiner, load_sdxl_text_encoders

MESSAGE = r"the embedded refiner needs diffusers \(pip install diffusers\)"


@pytest.fixture
def without_diffusers(monkeypatch):
    # A None entry is what `import diffusers` meets where the package is absent: ImportError. Cached submodules must
    # not slip past that check, so hide them too.
    for name in [name for name in sys.modules if name == "diffusers" or name.startswith("diffusers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "diffusers", None)


@pytest.mark.parametrize("load", [SD1Refiner.from_state_dict, load_kl_decoder,
                                  SDXLRefiner.from_state_dict, load_sdxl_text_encoders],
                         ids=["refiner", "kl-decoder", "sdxl-refiner", "sdxl-text-encoders"])
def test_loading_without_diffusers_says_what_to_install(without_diffusers, load):
    with pytest.raises(TinyBreakerError, match=MESSAGE):
        load({}, device="cpu", dtype=torch.float32)


def test_importing_the_modules_does_not_need_diffusers():
    # A fresh interpreter, so that no module imported by other tests is replaced.
    code = ("import sys; sys.modules['diffusers'] = None; "
            "import tinybreaker_ext.models.sd1_refiner, tinybreaker_ext.models.sdxl_refiner, "
            "tinybreaker_ext.models.kl_decoder, "
            "tinybreaker_ext.models.clip_text, tinybreaker_ext.models.clip_tokenizer")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr

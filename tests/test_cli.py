import subprocess
import sys

import pytest
from PIL import Image

from tinybreaker_ext.cli import main
from tinybreaker_ext.prompt.metadata import parse_infotext


def test_help_works_without_models():
    completed = subprocess.run([sys.executable, "-m", "tinybreaker_ext", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0
    assert "--checkpoint" in completed.stdout and "--download" in completed.stdout


def test_missing_models_name_what_and_where(tmp_path, capsys):
    code = main(["a cat", "--models-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    assert "TinyBreaker checkpoint not found" in error and str(tmp_path) in error and "--download" in error


def test_writes_png_with_infotext_that_png_info_reads(tiny_model_folder, tmp_path, capsys):
    pytest.importorskip("diffusers")  # the embedded refiner
    folder, paths = tiny_model_folder
    output = tmp_path / "out.png"
    code = main(["a red cube --seed 7", "-o", str(output), "--models-dir", str(folder), "--width", "32",
                 "--height", "32", "--t5-tokenizer", paths["t5_tokenizer"], "--clip-tokenizer",
                 paths["clip_tokenizer"], "--checkpoint", paths["checkpoint1"], "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    image = Image.open(output)
    assert image.size == (32, 32)
    fields = parse_infotext(image.info["parameters"])
    assert fields["Seed"] == "7" and fields["Model"] == "tinybreaker_prototype1"

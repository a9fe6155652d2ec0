"""Classifier and finder against the full-layout builders of the other areas (the files the loaders really read)."""

from __future__ import annotations

import pytest
import torch

from builders.common import save_safetensors
from builders.t5 import t5_state_dict, train_tiny_t5_tokenizer
from builders.taesd import taesd_decoder_state_dict, taesd_encoder_state_dict, tiny_vae_layout, transcoder_state_dict
from builders.tinybreaker_files import tinybreaker_metadata, tinybreaker_state_dict
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import FileKind, classify
from tinybreaker_ext.files.finder import ModelFinder
from builders.files import found_paths  # noqa: E402

pytestmark = pytest.mark.slow  # building the tiny SD1 refiner inside the checkpoints takes a few seconds


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_models")
    paths = {f"p{n}": save_safetensors(tinybreaker_state_dict(n), root / f"tinybreaker_prototype{n}.safetensors",
                                       tinybreaker_metadata(n)) for n in (0, 1)}
    paths["t5"] = save_safetensors(t5_state_dict(dtype=torch.float8_e4m3fn), root / "te" / "t5.safetensors")
    paths["tokenizer"] = train_tiny_t5_tokenizer(root / "t5_tokenizer")
    return root, paths


def test_full_tinybreaker_layouts_classify_by_prototype(real_tree):
    _, paths = real_tree
    p0, p1 = classify(paths["p0"]), classify(paths["p1"])
    assert (p0.kind, p1.kind) == (FileKind.TINYBREAKER_PROTOTYPE0, FileKind.TINYBREAKER_PROTOTYPE1)
    assert p1.description == "TinyBreaker prototype1 checkpoint (PixArt native layout, 'TinyBreaker prototype1')"


def test_finder_lists_each_real_file_under_its_role(real_tree):
    root, paths = real_tree
    finder = ModelFinder([root])
    assert found_paths(finder, "checkpoint") == [paths["p1"], paths["p0"]]  # the preferred prototype first
    assert found_paths(finder, "t5") == [paths["t5"]]
    assert finder.candidates("t5")[0].description == "T5 encoder (float8_e4m3fn)"


@pytest.mark.parametrize("layout", ["native", "comfy", "diffusers"])
def test_tiny_vae_builder_layouts_are_named_but_not_taken(tmp_path, layout):
    state_dict = tiny_vae_layout(taesd_encoder_state_dict(0, hidden_channels=8),
                                 taesd_decoder_state_dict(1, hidden_channels=8), layout,
                                 encoder_scale=0.13025, decoder_scale=0.18215)
    with pytest.raises(ModelFileError, match=r"looks like a tiny VAE \(TAESD\)"):
        classify(save_safetensors(state_dict, tmp_path / "taesd.safetensors"))


@pytest.mark.parametrize("prefix", ["", "transcoder."])
def test_transcoder_builder_is_named_but_not_taken(tmp_path, prefix):
    with pytest.raises(ModelFileError, match="looks like a bare tiny latent transcoder"):
        classify(save_safetensors(transcoder_state_dict(0, prefix=prefix), tmp_path / "transcoder.safetensors"))

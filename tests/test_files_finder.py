"""ModelFinder over a tree of mixed files: roles decided by headers, depth bound, dedupe, cache, skip reasons."""

from __future__ import annotations

import os

import pytest
import torch

import tinybreaker_ext.files.finder as finder_module
from builders.files import (
    found_paths, pixart_keys, sd1_checkpoint_keys, t5_keys, tinybreaker_keys, write_model, write_pickle_checkpoint,
    write_truncated_copy,
)
from tinybreaker_ext.files.classify import FileKind, ModelFileInfo
from tinybreaker_ext.files.finder import ModelFinder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "models"
    files = {
        "p1": write_model(root / "TinyBreaker" / "tb_p1.safetensors", tinybreaker_keys(1)),
        "p0": write_model(root / "TinyBreaker" / "old" / "tb_p0.safetensors", tinybreaker_keys(0)),
        "pixart": write_model(root / "a" / "b" / "c" / "pixart.safetensors", pixart_keys("diffusers")),
        # named like a checkpoint, but its header says T5: the header decides
        "t5_misnamed": write_model(root / "text_encoder" / "checkpoint.safetensors", t5_keys(torch.float8_e4m3fn)),
        "t5": write_model(root / "text_encoder" / "t5xxl_fp16.sft", t5_keys(torch.float16)),
        "too_deep": write_model(root / "d1" / "d2" / "d3" / "d4" / "d5" / "deep.safetensors", tinybreaker_keys(1)),
        "sd1": write_model(root / "Stable-diffusion" / "sd15.safetensors", sd1_checkpoint_keys()),
        "ckpt": write_pickle_checkpoint(root / "Stable-diffusion" / "old.ckpt"),
        "hidden": write_model(root / ".cache" / "hidden.safetensors", tinybreaker_keys(1)),
    }
    files["truncated"] = write_truncated_copy(files["p1"], root / "TinyBreaker" / "broken.safetensors", 100)
    return root, files


def test_checkpoints_are_the_tinybreaker_files_sorted_not_plain_pixart(tree):
    root, files = tree
    found = ModelFinder([root]).candidates("checkpoint")
    assert [info.path for info in found] == [files["p1"], files["p0"]]  # prototype1 first, though "old/" sorts first
    kinds = {info.path: info.kind for info in found}
    assert kinds[files["p0"]] is FileKind.TINYBREAKER_PROTOTYPE0
    assert kinds[files["p1"]] is FileKind.TINYBREAKER_PROTOTYPE1
    assert all(isinstance(info, ModelFileInfo) for info in found)


def test_t5_role_is_decided_by_header_not_name(tree):
    root, files = tree
    finder = ModelFinder([root])
    assert found_paths(finder, "t5") == sorted([files["t5_misnamed"], files["t5"]])
    assert files["t5_misnamed"] not in found_paths(finder, "checkpoint")


def test_depth_is_bounded_and_hidden_folders_are_skipped(tree, monkeypatch):
    root, files = tree
    paths = found_paths(ModelFinder([root]), "checkpoint")
    assert files["too_deep"] not in paths and files["hidden"] not in paths
    monkeypatch.setattr(finder_module, "MAX_DEPTH", 6)
    assert files["too_deep"] in found_paths(ModelFinder([root]), "checkpoint")


def test_unusable_files_are_listed_with_reasons(tree):
    root, files = tree
    finder = ModelFinder([root, root / "missing"])
    finder.candidates("checkpoint")
    reasons = dict(finder.skipped)
    assert "truncated" in reasons[files["truncated"]]
    assert "SD1/SD2 checkpoint" in reasons[files["sd1"]]
    assert "a pickle file (never loaded" in reasons[files["ckpt"]]
    assert reasons[os.path.abspath(root / "missing")] == "search folder does not exist"


def test_symlinked_duplicates_are_listed_once_and_loops_end(tree, tmp_path):
    root, files = tree
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(files["p1"], other / "link_to_p1.safetensors")
    os.symlink(root, root / "a" / "loop")
    paths = found_paths(ModelFinder([root, other]), "checkpoint")
    assert paths.count(files["p1"]) == 1 and str(other / "link_to_p1.safetensors") not in paths
    assert len(paths) == 2


def test_headers_are_classified_once_until_the_file_changes(tree, monkeypatch):
    root, files = tree
    calls = []
    real_classify = finder_module.classify
    monkeypatch.setattr(finder_module, "_FILE_CACHE", {})
    monkeypatch.setattr(finder_module, "classify", lambda path: calls.append(path) or real_classify(path))
    finder = ModelFinder([root])
    finder.candidates("checkpoint")
    first = len(calls)
    assert first >= 7
    finder.candidates("t5")
    ModelFinder([root]).candidates("checkpoint")
    assert len(calls) == first
    write_model(files["pixart"], tinybreaker_keys(1))  # same path, new content (new size/mtime)
    os.utime(files["pixart"], ns=(1, 1))
    found = {info.path: info for info in finder.candidates("checkpoint")}
    assert calls[first:] == [files["pixart"]]
    assert found[files["pixart"]].kind is FileKind.TINYBREAKER_PROTOTYPE1


def test_unknown_role_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="vae"):
        ModelFinder([tmp_path]).candidates("vae")


def test_prototype1_is_the_default_checkpoint_before_prototype0_and_plain_pixart_is_not_listed(tmp_path):
    from builders.files import TINYBREAKER_METADATA, pixart_keys, tinybreaker_keys, write_model
    from tinybreaker_ext.files.finder import ModelFinder

    write_model(tmp_path / "a_pixart.safetensors", pixart_keys())
    write_model(tmp_path / "b_prototype0.safetensors", tinybreaker_keys(prototype=0), TINYBREAKER_METADATA)
    write_model(tmp_path / "c_prototype1.safetensors", tinybreaker_keys(prototype=1), TINYBREAKER_METADATA)
    finder = ModelFinder([tmp_path])
    names = [os.path.basename(info.path) for info in finder.candidates("checkpoint")]
    assert names == ["c_prototype1.safetensors", "b_prototype0.safetensors"]

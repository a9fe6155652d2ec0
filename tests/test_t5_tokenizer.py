"""T5 tokenizer search order and the reference's tokenisation rules (docs/numerics.md "T5 tokenization").

Expected ids come from SentencePiece itself (an independent implementation of the same model), one call per
segment, so the tests check our segmentation/EOS/padding, not the tokenizer library.
"""

from __future__ import annotations

import json
import os

import pytest

from builders.t5 import copy_tokenizer
from tinybreaker_ext.errors import ModelFileError, ModelNotFoundError
from tinybreaker_ext.models.t5_tokenizer import (EOS_ID, HOST_TOKENIZER_SUBDIRS, PAD_ID, T5PromptTokenizer,
                                                 find_t5_tokenizer, host_tokenizer_dirs, is_t5_tokenizer_dir)


@pytest.fixture(scope="module")
def spm(t5_tokenizer_dir):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=os.path.join(t5_tokenizer_dir, "spiece.model"))


def _expected(spm, segments, min_length=77):
    ids, weights = [], []
    for text, weight in segments:
        piece_ids = spm.encode(text)
        ids += piece_ids
        weights += [weight] * len(piece_ids)
    ids.append(EOS_ID)
    weights.append(1.0)
    pad = max(0, min_length - len(ids))
    return ids + [PAD_ID] * pad, weights + [1.0] * pad


def test_plain_prompt_gets_eos_then_padding_to_77(t5_tokenizer, spm):
    ids, weights = t5_tokenizer.tokenize_with_weights("a photo of a cat")
    assert (ids, weights) == _expected(spm, [("a photo of a cat", 1.0)])
    assert len(ids) == 77 and ids[len(spm.encode("a photo of a cat"))] == EOS_ID
    assert set(ids[len(spm.encode("a photo of a cat")) + 1:]) == {PAD_ID}


def test_long_prompt_is_not_truncated(t5_tokenizer, spm):
    text = ", ".join(["a red house by the lake at sunset"] * 12)
    ids, _ = t5_tokenizer.tokenize_with_weights(text)
    assert len(spm.encode(text)) > 100
    assert ids == spm.encode(text) + [EOS_ID]


def test_min_length_one_means_no_padding(t5_tokenizer, spm):
    assert t5_tokenizer.tokenize_with_weights("a cat", min_length=1)[0] == spm.encode("a cat") + [EOS_ID]
    assert t5_tokenizer.tokenize_with_weights("", min_length=1) == ([EOS_ID], [1.0])


def test_weights_follow_their_segments(t5_tokenizer, spm):
    text = "a (red:1.5) house, ((blue)) sky"
    segments = [("a ", 1.0), ("red", 1.5), (" house, ", 1.0), ("blue", 1.1 * 1.1), (" sky", 1.0)]
    assert t5_tokenizer.tokenize_with_weights(text) == _expected(spm, segments)


def test_segment_starting_with_punctuation_gets_its_own_space_piece(t5_tokenizer, spm):
    space, comma = spm.piece_to_id("▁"), spm.piece_to_id(",")
    ids, weights = t5_tokenizer.tokenize_with_weights("(a cat:1.2), a dog")
    cat = spm.encode("a cat")
    assert ids[:len(cat)] == cat and weights[:len(cat)] == [1.2] * len(cat)
    assert ids[len(cat):len(cat) + 2] == [space, comma]  # ", a dog" tokenised alone: '▁' then ','
    joint = spm.encode("a cat, a dog")
    assert joint[len(cat)] == comma  # tokenised together there is no '▁' before the comma
    assert ids[:len(ids) - ids[::-1].index(EOS_ID)] != joint + [EOS_ID]


def test_unbalanced_parenthesis_is_tokenised_literally(t5_tokenizer, spm):
    text = "a (cat (dog:1.3) end"
    ids, weights = t5_tokenizer.tokenize_with_weights(text, min_length=1)
    assert ids == spm.encode("a ") + spm.encode("(cat (dog:1.3) end") + [EOS_ID]
    assert set(weights) == {1.0}


def test_spiece_only_folder_tokenises_the_same(t5_tokenizer_dir, tmp_path, t5_tokenizer):
    folder = copy_tokenizer(t5_tokenizer_dir, str(tmp_path / "sp"), ("spiece.model", "tokenizer_config.json"))
    assert is_t5_tokenizer_dir(folder)
    fallback = T5PromptTokenizer.from_dir(folder)
    text = "A (photo:1.3) of the old castle, rain; (((stars)))"
    assert fallback.tokenize_with_weights(text) == t5_tokenizer.tokenize_with_weights(text)


def test_tokenizer_with_other_special_ids_is_refused(tmp_path, t5_tokenizer_dir):
    data = json.load(open(os.path.join(t5_tokenizer_dir, "tokenizer.json"), encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab[0], vocab[1] = vocab[1], vocab[0]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    assert not is_t5_tokenizer_dir(tmp_path)
    with pytest.raises(ModelFileError, match="tokenizer.json"):
        T5PromptTokenizer.from_dir(tmp_path)


def test_broken_tokenizer_json_names_the_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFileError, match="tokenizer.json"):
        T5PromptTokenizer.from_dir(tmp_path)
    with pytest.raises(ModelFileError, match="no tokenizer.json"):
        T5PromptTokenizer.from_dir(tmp_path / "missing")


# --- search order -------------------------------------------------------------------------------------------------

def _no_download(*args, **kwargs):
    raise AssertionError("must not download")


def test_user_path_comes_first_and_must_be_valid(t5_tokenizer_dir, tmp_path):
    models = tmp_path / "models"
    copy_tokenizer(t5_tokenizer_dir, str(models / "t5_tokenizer"))
    assert find_t5_tokenizer(t5_tokenizer_dir, [models], download=_no_download) == t5_tokenizer_dir
    as_file = os.path.join(t5_tokenizer_dir, "tokenizer.json")
    assert find_t5_tokenizer(as_file, download=_no_download) == t5_tokenizer_dir
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        find_t5_tokenizer(str(tmp_path / "nowhere"), [models], download=_no_download)


def test_models_folder_itself_then_t5_tokenizer_child_then_other_children(t5_tokenizer_dir, tmp_path):
    models = tmp_path / "models"
    other = copy_tokenizer(t5_tokenizer_dir, str(models / "a_other"))
    assert find_t5_tokenizer(None, [models], download=_no_download) == other
    preferred = copy_tokenizer(t5_tokenizer_dir, str(models / "t5_tokenizer"))
    assert find_t5_tokenizer(None, [models], download=_no_download) == preferred
    copy_tokenizer(t5_tokenizer_dir, str(models))
    assert find_t5_tokenizer(None, [models], download=_no_download) == str(models)


def test_models_folders_come_before_host_copies(t5_tokenizer_dir, tmp_path):
    host_root = tmp_path / "reforge"
    host = copy_tokenizer(t5_tokenizer_dir, os.path.join(host_root, "ldm_patched", "modules", "t5_tokenizer"))
    assert find_t5_tokenizer(None, [tmp_path / "empty"], host_tokenizer_dirs(host_root), download=_no_download) == host
    models = copy_tokenizer(t5_tokenizer_dir, str(tmp_path / "models"))
    assert find_t5_tokenizer(None, [models], host_tokenizer_dirs(host_root), download=_no_download) == models


def test_the_hub_cache_comes_after_host_copies_and_before_a_download(t5_tokenizer_dir, tmp_path, monkeypatch):
    """A PixArt-Sigma diffusers download leaves its T5 tokenizer in the Hugging Face cache's tokenizer/ subfolder."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = copy_tokenizer(t5_tokenizer_dir, str(tmp_path / "hub" / "models--PixArt-alpha--PixArt-Sigma-XL-2-1024-MS"
                                                  / "snapshots" / "1234" / "tokenizer"))
    assert find_t5_tokenizer(None, [tmp_path / "models"], [tmp_path / "host"], download=_no_download) == cached
    host = copy_tokenizer(t5_tokenizer_dir, str(tmp_path / "host"))
    assert find_t5_tokenizer(None, [tmp_path / "models"], [host], download=_no_download) == host


def test_host_locations_cover_reforge_and_forge():
    assert "ldm_patched/modules/t5_tokenizer" in HOST_TOKENIZER_SUBDIRS
    assert any(sub.startswith("backend/huggingface/") for sub in HOST_TOKENIZER_SUBDIRS)
    assert host_tokenizer_dirs("/h")[0] == os.path.join("/h", "ldm_patched", "modules", "t5_tokenizer")


def test_download_is_last_and_goes_into_the_models_folder(t5_tokenizer_dir, tmp_path):
    calls = []

    def fake_download(repo_id, filename, dest_dir, **kwargs):
        calls.append((repo_id, filename, dest_dir))
        return copy_tokenizer(t5_tokenizer_dir, dest_dir) + os.sep + filename

    models = tmp_path / "models"
    models.mkdir()
    found = find_t5_tokenizer(None, [models], [tmp_path / "host"], download=fake_download)
    assert calls == [("google-t5/t5-base", "tokenizer.json", str(models / "t5_tokenizer"))]
    assert found == str(models / "t5_tokenizer")
    assert find_t5_tokenizer(None, [models], download=_no_download) == found  # found locally next time


def test_nothing_found_says_where_to_put_the_files(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        find_t5_tokenizer(None, [tmp_path / "models"], [tmp_path / "host"], allow_download=False)
    message = str(info.value)
    assert str(tmp_path / "models") in message and str(tmp_path / "host") in message
    assert os.path.join(str(tmp_path / "models"), "t5_tokenizer") in message and "tokenizer.json" in message


def test_failed_download_becomes_not_found_with_the_reason(tmp_path):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    with pytest.raises(ModelNotFoundError, match="network is unreachable"):
        find_t5_tokenizer(None, [tmp_path], download=offline)


def test_downloaded_file_that_is_not_t5_is_refused(tmp_path):
    def wrong(repo_id, filename, dest_dir, **kwargs):
        os.makedirs(dest_dir, exist_ok=True)
        path = os.path.join(dest_dir, filename)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"model": {"type": "BPE", "vocab": {}}}, f)
        return path

    with pytest.raises(ModelFileError, match="tokenizer.json"):
        find_t5_tokenizer(None, [tmp_path], download=wrong)

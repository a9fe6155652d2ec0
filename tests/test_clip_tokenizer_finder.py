"""Where the SD1 CLIP tokenizer is looked for: user path -> models folders -> host copies -> hub download."""

from __future__ import annotations

import os

import pytest

from builders.sd1 import write_tiny_clip_tokenizer
from tinybreaker_ext.errors import ModelNotFoundError
from tinybreaker_ext.models.clip_tokenizer import (CLIP_TOKENIZER_DIRNAME, CLIP_TOKENIZER_REPO, find_clip_tokenizer,
                                                   load_clip_tokenizer)


def _no_download(*args, **kwargs):
    raise AssertionError(f"unexpected download {args}")


@pytest.fixture
def places(tmp_path):
    user = write_tiny_clip_tokenizer(tmp_path / "user")
    models = tmp_path / "models"
    write_tiny_clip_tokenizer(models / CLIP_TOKENIZER_DIRNAME)
    host = write_tiny_clip_tokenizer(tmp_path / "webui" / "ldm_patched" / "modules" / "sd1_tokenizer")
    return {"user": user, "models": str(models), "host": host, "root": tmp_path}


def test_user_path_comes_first(places):
    found = find_clip_tokenizer(places["user"], [places["models"]], [places["host"]], download=_no_download)
    assert found == places["user"]


def test_user_path_may_name_the_vocab_file(places):
    vocab = os.path.join(places["user"], "vocab.json")
    assert find_clip_tokenizer(vocab, [places["models"]], download=_no_download) == places["user"]


def test_models_folder_comes_before_host_copies(places):
    found = find_clip_tokenizer(None, [places["models"]], [places["host"]], download=_no_download)
    assert found == os.path.join(places["models"], CLIP_TOKENIZER_DIRNAME)


def test_a_user_path_without_the_files_is_an_error_naming_it(places, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="empty"):
        find_clip_tokenizer(empty, [places["models"]], download=_no_download)


def test_other_children_of_a_models_folder_are_searched_too(tmp_path):
    found = write_tiny_clip_tokenizer(tmp_path / "models" / "sd15_tokenizer")
    assert find_clip_tokenizer(None, [tmp_path / "models"], download=_no_download) == found


def test_host_copy_is_used_when_our_folders_have_none(places, tmp_path):
    found = find_clip_tokenizer(None, [tmp_path / "nothing"], [places["host"]], download=_no_download)
    assert found == places["host"]


def test_hugging_face_cache_snapshot_named_by_refs_main_is_found(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--openai--clip-vit-large-patch14"
    write_tiny_clip_tokenizer(repo / "snapshots" / "0000old")
    current = write_tiny_clip_tokenizer(repo / "snapshots" / "ffffnew")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("ffffnew")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    found = find_clip_tokenizer(None, [], download=_no_download)
    assert found == current


@pytest.mark.parametrize("variable, value, cache", [("HF_HUB_CACHE", "somewhere", "somewhere"),
                                                    ("HF_HOME", "hf-home", "hf-home/hub")])
def test_the_hub_cache_of_the_environment_is_searched_after_the_host_copies(tmp_path, monkeypatch, variable, value,
                                                                            cache):
    """A1111 keeps the tokenizer in the Hugging Face cache; an SD1.5 pipeline's tokenizer/ subfolder serves too."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path / value))
    found = write_tiny_clip_tokenizer(tmp_path / cache / "models--runwayml--stable-diffusion-v1-5" / "snapshots"
                                      / "abc" / "tokenizer")
    assert find_clip_tokenizer(None, [tmp_path / "models"], [tmp_path / "host"], allow_download=False) == found


def test_download_goes_into_the_first_models_folder_when_found_nowhere(tmp_path):
    calls = []

    def fake_download(repo_id, filename, dest_dir):
        calls.append((repo_id, filename, dest_dir))
        os.makedirs(dest_dir, exist_ok=True)
        source = write_tiny_clip_tokenizer(tmp_path / "hub-files")
        with open(os.path.join(source, filename), "rb") as src, open(os.path.join(dest_dir, filename), "wb") as dst:
            dst.write(src.read())
        return os.path.join(dest_dir, filename)

    first, second = tmp_path / "models-a", tmp_path / "models-b"
    found = find_clip_tokenizer(None, [first, second], [tmp_path / "no-host"], download=fake_download)
    target = os.path.join(first, CLIP_TOKENIZER_DIRNAME)
    assert found == target
    assert sorted(calls) == [(CLIP_TOKENIZER_REPO, "merges.txt", target), (CLIP_TOKENIZER_REPO, "vocab.json", target)]
    assert load_clip_tokenizer(found)("cat")["input_ids"][1:-1] != []


def test_without_download_the_error_lists_the_places_and_where_to_put_the_files(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(ModelNotFoundError) as caught:
        find_clip_tokenizer(None, [models], [tmp_path / "host"], allow_download=False, download=_no_download)
    message = str(caught.value)
    assert "CLIP tokenizer" in message
    for place in (models, tmp_path / "host"):
        assert str(place) in message
    assert os.path.join(str(models), CLIP_TOKENIZER_DIRNAME) in message and "vocab.json" in message


def test_a_failed_download_says_where_to_put_the_files(tmp_path):
    def offline(repo_id, filename, dest_dir):
        raise OSError("network is unreachable")

    with pytest.raises(ModelNotFoundError, match="network is unreachable.*merges.txt"):
        find_clip_tokenizer(None, [tmp_path / "models"], download=offline)


def test_with_no_models_folder_there_is_nowhere_to_download_to(tmp_path):
    with pytest.raises(ModelNotFoundError):
        find_clip_tokenizer(None, [], [tmp_path / "host"], download=_no_download)


def test_loaded_tokenizer_wraps_text_in_bos_and_eos(tiny_clip_tokenizer_dir):
    tokenizer = load_clip_tokenizer(tiny_clip_tokenizer_dir)
    ids = tokenizer("a cat")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "cat</w>", "<|endoftext|>"]


def test_default_download_is_the_projects_hub_downloader(tmp_path, monkeypatch):
    import tinybreaker_ext.files.download as download_module

    calls = []

    def fake_hub_download(repo_id, filename, dest_dir, **kwargs):
        calls.append(filename)
        write_tiny_clip_tokenizer(dest_dir)
        return os.path.join(dest_dir, filename)

    monkeypatch.setattr(download_module, "download_hub_file", fake_hub_download)
    found = find_clip_tokenizer(None, [tmp_path / "models"])
    assert found == os.path.join(tmp_path / "models", CLIP_TOKENIZER_DIRNAME)
    assert sorted(calls) == ["merges.txt", "vocab.json"]

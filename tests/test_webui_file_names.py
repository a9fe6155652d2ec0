"""File names from the UI, API, infotext or a queue resolve only to model files inside the model folders
(webui/run_plan.resolve_file): a 422 naming the field and the files that exist, nothing about other paths."""

import os

import pytest

from builders.files import t5_keys, write_model
from builders.params import script_args
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.webui.run_plan import resolve_file

OUTSIDE = "/etc/passwd"


def refused(name, role="checkpoint", field="checkpoint") -> str:
    with pytest.raises(ParameterError) as error:
        resolve_file(role, name, field)
    assert error.value.field == field
    return str(error.value)


def test_a_name_or_a_path_relative_to_a_model_folder_resolves(tb_host):
    checkpoint = tb_host.files["checkpoint"]
    assert resolve_file("checkpoint", os.path.basename(checkpoint), "checkpoint") == checkpoint
    assert resolve_file("t5", "", "t5_file") == tb_host.files["t5"]  # empty: the first one found
    sub = os.path.join(os.path.dirname(checkpoint), "sub")
    os.makedirs(sub, exist_ok=True)
    nested = write_model(os.path.join(sub, "t5_nested.safetensors"), t5_keys())
    try:
        assert resolve_file("t5", "sub/t5_nested.safetensors", "t5_file") == nested
        assert resolve_file("t5", "t5_nested.safetensors", "t5_file") == nested
    finally:
        os.remove(nested)


@pytest.mark.parametrize("name", [OUTSIDE, "/" + "x" * 3, "../../../etc/passwd", "TinyBreaker/../../secret",
                                  "a\0b.safetensors", "C:/models/x.safetensors", "..\\..\\etc\\passwd"])
def test_paths_that_leave_the_folders_are_refused_without_saying_what_exists_there(tb_host, name):
    message = refused(name)
    assert "tinybreaker_prototype1.safetensors" in message  # what the caller may choose
    assert "exist" not in message.replace("exists", "").lower() or "found:" in message
    assert "No such file" not in message and "Permission" not in message


def test_an_absolute_path_to_a_real_model_is_refused_too(tb_host):
    refused(tb_host.files["checkpoint"])  # the same file, but named by an absolute path


def test_a_file_in_the_folder_that_is_not_a_model_is_named_with_the_reason(tb_host):
    folder = os.path.dirname(tb_host.files["checkpoint"])
    junk = os.path.join(folder, "junk.safetensors")
    with open(junk, "wb") as file:
        file.write(os.urandom(256))
    try:
        message = refused("junk.safetensors")
        assert "not usable as a TinyBreaker checkpoint" in message
    finally:
        os.remove(junk)


def test_a_model_of_another_role_is_named_as_such(tb_host):
    message = refused(os.path.basename(tb_host.files["t5"]))
    assert "is not a TinyBreaker checkpoint" in message


def test_symlinks_inside_the_folders_are_followed_to_files_only(tb_host, tmp_path):
    folder = os.path.dirname(tb_host.files["checkpoint"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_model(str(elsewhere / "t5_linked_folder.safetensors"), t5_keys())
    linked_file = os.path.join(folder, "t5_linked.safetensors")
    linked_folder = os.path.join(folder, "linked_folder")
    os.symlink(str(elsewhere / "t5_linked_folder.safetensors"), linked_file)
    os.symlink(str(elsewhere), linked_folder)
    try:
        assert resolve_file("t5", "t5_linked.safetensors", "t5_file") == linked_file
        refused("t5_linked_folder.safetensors", role="t5", field="t5_file")
        refused("linked_folder/t5_linked_folder.safetensors", role="t5", field="t5_file")
    finally:
        os.remove(linked_file)
        os.remove(linked_folder)


def test_through_the_api_a_path_escape_is_a_422(tb_host):
    fastapi = pytest.importorskip("fastapi")
    from tinybreaker_ext.params import TinyBreakerParams

    with pytest.raises(fastapi.HTTPException) as caught:
        tb_host.run(tb_host.make_p(), script_args(TinyBreakerParams(enabled=True, checkpoint=OUTSIDE)))
    assert caught.value.status_code == 422 and "'checkpoint'" in caught.value.detail
    assert "root:" not in caught.value.detail

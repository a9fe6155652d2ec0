"""The lazy safetensors reader: values, header facts, views, laziness, and one-line errors for broken files."""

from __future__ import annotations

import os
import zipfile

import psutil
import pytest
import torch
from safetensors.torch import load_file

import tinybreaker_ext.files.tensor_bytes as tensor_bytes
from builders.common import save_safetensors
from builders.files import write_pickle_checkpoint, write_truncated_copy
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.safetensors_file import SafetensorsFile, read_safetensors_header
from tinybreaker_ext.files.state_dict import dtype_of, shape_of, with_prefix


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


@pytest.fixture
def sample(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "a.weight": torch.randn(3, 5, generator=generator),
        "a.bias": torch.randn(3, generator=generator).half(),
        "b.inner.weight": torch.randn(2, 2, generator=generator).to(torch.bfloat16),
        "b.inner.scale": torch.tensor(0.18215, dtype=torch.float16),
        "b.fp8": torch.tensor([0.5, -1.0, 448.0]).to(torch.float8_e4m3fn),
        "b.fp8b": torch.tensor([0.25, 2.0]).to(torch.float8_e5m2),
        "count": torch.arange(4, dtype=torch.int64),
    }
    path = save_safetensors(tensors, tmp_path / "sample.safetensors", {"modelspec.title": "Sample", "k": "v"})
    return path, tensors


def test_values_and_header_facts_match_what_was_saved(sample):
    path, tensors = sample
    with SafetensorsFile(path) as file:
        assert sorted(file.keys()) == sorted(tensors)
        assert len(file) == len(tensors)
        assert file.header.metadata == {"modelspec.title": "Sample", "k": "v"}
        for key, tensor in tensors.items():
            assert file.shape(key) == tuple(tensor.shape)
            assert file.dtype(key) == tensor.dtype
            assert file.nbytes(key) == tensor.numel() * tensor.element_size()
            assert torch.equal(_bytes(file[key]), _bytes(tensor)), key


def test_fp8_tensors_come_back_as_torch_float8(sample):
    path, tensors = sample
    with SafetensorsFile(path) as file:
        assert file.entry("b.fp8").dtype_name == "F8_E4M3" and file.dtype("b.fp8") == torch.float8_e4m3fn
        assert file.entry("b.fp8b").dtype_name == "F8_E5M2" and file["b.fp8b"].dtype == torch.float8_e5m2
        assert file["b.fp8"].float().tolist() == [0.5, -1.0, 448.0]


def test_agrees_with_safetensors_load_file(sample):
    path, _ = sample
    reference = load_file(path)
    with SafetensorsFile(path) as file:
        assert all(torch.equal(_bytes(file[key]), _bytes(value))
                   for key, value in reference.items())


def test_prefixed_views_nest_and_strip_prefixes(sample):
    path, tensors = sample
    with SafetensorsFile(path) as file:
        view = file.prefixed("b.")
        assert sorted(view) == ["fp8", "fp8b", "inner.scale", "inner.weight"]
        inner = view.prefixed("inner.")
        assert sorted(inner.keys()) == ["scale", "weight"]
        assert inner.shape("weight") == (2, 2) and inner.dtype("weight") == torch.bfloat16
        assert torch.equal(inner["scale"], tensors["b.inner.scale"])
        assert sum(map(inner.nbytes, inner)) == 2 * 2 * 2 + 2
        assert inner.header.metadata == file.header.metadata and inner.path == file.path
        assert "weight" in inner and "b.inner.weight" not in inner and "a.weight" not in view
        assert set(inner.keys()) == {"scale", "weight"}
        with pytest.raises(KeyError):
            inner["a.weight"]
        assert file.prefixed("nothing.").keys() == set() and len(file.prefixed("nothing.")) == 0


def test_state_dict_helpers_work_on_views(sample):
    path, _ = sample
    with SafetensorsFile(path) as file:
        assert shape_of(file, "a.weight") == (3, 5)
        assert dtype_of(file, "b.fp8") == torch.float8_e4m3fn
        assert sorted(with_prefix(file, "a.")) == ["bias", "weight"]


def test_tensors_stay_valid_after_close(sample):
    path, tensors = sample
    file = SafetensorsFile(path)
    weight = file["a.weight"]
    file.close()
    assert torch.equal(weight, tensors["a.weight"])
    assert torch.equal(file["a.bias"], tensors["a.bias"])  # reading again reopens lazily
    file.close()


def test_header_facts_read_no_tensor_and_indexing_reads_only_that_tensor(sample, monkeypatch):
    path, _ = sample
    reads = []
    real = tensor_bytes.read_bytes
    monkeypatch.setattr(tensor_bytes, "read_bytes", lambda stream, offset, nbytes, into=None:
                        reads.append(nbytes) or real(stream, offset, nbytes, into))
    with SafetensorsFile(path) as file:
        view = file.prefixed("b.")
        _ = (file.header.metadata, view.shape("fp8"), view.dtype("inner.weight"), list(view), len(file))
        assert file._stream is None and reads == []
        _ = view["inner.scale"]
        assert reads == [view.nbytes("inner.scale")]


def test_tensors_own_their_memory_so_nothing_stays_mapped(sample):
    path, tensors = sample
    with SafetensorsFile(path) as file:
        weight = file["a.weight"]
    maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
    assert os.path.realpath(path) not in maps
    assert torch.equal(weight, tensors["a.weight"])


def test_reading_one_small_tensor_of_a_big_file_does_not_load_the_file(tmp_path):
    big = 96 * 1024 * 1024
    path = save_safetensors({"big": torch.zeros(big // 4), "small": torch.arange(8.0)}, tmp_path / "big.safetensors")
    process = psutil.Process()
    before = process.memory_info().rss
    with SafetensorsFile(path) as file:
        assert file["small"].sum().item() == 28.0
        assert file.nbytes("big") == big
        grown = process.memory_info().rss - before
    assert grown < big // 4, f"RSS grew by {grown} bytes reading an 8-element tensor"


# --- broken files: one-line messages that name the file and the problem ----------------------------------------------
def _error(path) -> str:
    with pytest.raises(ModelFileError) as caught:
        SafetensorsFile(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(os.fspath(path) + ": ")
    assert caught.value.path == os.fspath(path)
    return message


def test_missing_file(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.safetensors")


def test_directory_instead_of_file(tmp_path):
    assert "is a directory" in _error(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert _error(path) == f"{path}: file is empty (0 bytes) (expected a .safetensors model file)"


def test_too_short_file(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    assert "too short" in _error(path) and "3 bytes" in _error(path)


def test_renamed_pickle_checkpoint(tmp_path):
    path = write_pickle_checkpoint(tmp_path / "model.safetensors")
    assert _error(path) == (f"{path}: looks like a pickle file (.ckpt/.pt/.bin); only .safetensors and GGUF files "
                            "are loaded (expected a .safetensors model file)")


def test_renamed_torch_zip_checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    assert "PyTorch zip/pickle checkpoint" in _error(path)


def test_git_lfs_pointer_and_html_page(tmp_path):
    pointer = tmp_path / "pointer.safetensors"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 3000000000\n")
    assert "Git LFS pointer" in _error(pointer)
    page = tmp_path / "page.safetensors"
    page.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    assert "HTML" in _error(page)


def test_header_that_is_not_json(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"x" * 20 + b"\0" * 8)
    assert "not a safetensors file" in _error(path)


def test_truncated_data_section(sample, tmp_path):
    path, _ = sample
    cut = write_truncated_copy(path, tmp_path / "cut.safetensors", missing_bytes=5)
    size = os.path.getsize(cut)
    assert _error(cut) == (f"{cut}: truncated: {size} bytes on disk but the header needs {size + 5} "
                           "(5 missing; incomplete download?) (expected a complete .safetensors model file)")


def test_truncated_inside_the_header(sample, tmp_path):
    path, _ = sample
    header_size = int.from_bytes(open(path, "rb").read(8), "little")
    cut = write_truncated_copy(path, tmp_path / "cut.safetensors", os.path.getsize(path) - 8 - header_size // 2)
    assert "truncated" in _error(cut) and "header" in _error(cut)


def test_extra_bytes_after_the_data(sample, tmp_path):
    path, _ = sample
    padded = tmp_path / "padded.safetensors"
    padded.write_bytes(open(path, "rb").read() + b"\0" * 7)
    assert "7 unexpected bytes" in _error(padded)


def test_corrupt_entry_shape_disagrees_with_offsets(tmp_path):
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    assert "corrupt header" in _error(path) and "'w'" in _error(path)


def test_header_is_read_without_opening_tensors(sample):
    path, tensors = sample
    header = read_safetensors_header(path)
    assert set(header.tensors) == set(tensors)
    assert header.tensors["a.weight"].shape == (3, 5) and header.tensors["a.weight"].nbytes == 60


def test_read_into_a_buffer_gives_the_tensor_as_a_view_of_it(sample):
    path, _ = sample
    with SafetensorsFile(path) as file:
        view = file.prefixed("b.")
        buffer = torch.zeros(view.nbytes("inner.weight") + 5, dtype=torch.uint8)
        tensor = view.read_into("inner.weight", buffer)
        assert tensor.data_ptr() == buffer.data_ptr() and torch.equal(tensor, view["inner.weight"])

"""GGUF T5 encoders (city96's layout): torch dequantizers against gguf's numpy ones, loading, classification,
finding, errors, and running without the gguf package."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from builders.common import save_safetensors  # noqa: E402
from builders.gguf_files import dequantized_state_dict, gguf_name, write_gguf_t5  # noqa: E402
from builders.t5 import t5_state_dict  # noqa: E402
from tinybreaker_ext.errors import ModelFileError  # noqa: E402
from tinybreaker_ext.files.classify import FileKind, classify, open_model_file  # noqa: E402
from tinybreaker_ext.files.finder import ModelFinder  # noqa: E402
from builders.files import found_paths  # noqa: E402
from tinybreaker_ext.files.gguf_file import GGUFFile, read_gguf_header  # noqa: E402
from tinybreaker_ext.models import ggml_quants  # noqa: E402
from tinybreaker_ext.models.ggml_quants import QUANT_TYPES, QuantizedTensor, quantized_tensor  # noqa: E402
from tinybreaker_ext.models.t5_encoder import load_t5_encoder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Rows of 256 values: whole blocks for every quant type (as T5-XXL's 4096/10240 are).
TINY = dict(d_model=256, num_layers=2, num_heads=4, d_kv=64, d_ff=512, vocab_size=300)
FILE_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q5_1", "Q4_K_M", "Q4_0", "Q4_1", "Q3_K_L", "F16", "BF16")
QUANT_FIELDS = {  # byte offsets of the float16 scales in each block (kept finite in the random blocks)
    "Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q3_K": (108,), "Q4_K": (0, 2),
    "Q5_K": (0, 2), "Q6_K": (208,),
}


def _ids(length=24, batch=2, seed=1):
    return torch.randint(0, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


def random_blocks(type_name: str, count: int, seed: int = 0) -> np.ndarray:
    quant = QUANT_TYPES[type_name]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, quant.type_size), dtype=np.uint8)
    for start in QUANT_FIELDS[type_name]:
        blocks[:, start:start + 2] = rng.normal(0, 0.01, size=(count, 1)).astype(np.float16).view(np.uint8)
    return blocks


@pytest.fixture(scope="module")
def weights():
    return t5_state_dict(**TINY, seed=3)


@pytest.fixture(scope="module")
def gguf_files(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf_t5")
    return {file_type: write_gguf_t5(folder / f"t5-v1_1-xxl-encoder-{file_type}.gguf", weights, file_type)
            for file_type in ("F32",) + FILE_TYPES}


@pytest.mark.parametrize("type_name", sorted(QUANT_TYPES))
def test_torch_dequantizers_equal_the_gguf_package_on_random_blocks(type_name, monkeypatch):
    quant = QUANT_TYPES[type_name]
    assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]] == (quant.block_size, quant.type_size)
    blocks = random_blocks(type_name, 96)
    rows = blocks.reshape(4, -1)
    expected = torch.from_numpy(gguf.quants.dequantize(rows, gguf.GGMLQuantizationType[type_name]).copy())
    tensor = quantized_tensor(torch.from_numpy(rows.copy()), type_name, tuple(expected.shape))
    assert torch.equal(tensor.dequantize(torch.float32), expected)
    assert torch.equal(tensor.dequantize(torch.bfloat16), expected.to(torch.bfloat16))
    monkeypatch.setattr(ggml_quants, "CHUNK_ELEMENTS", 5 * quant.block_size)  # several steps, a short last one
    assert torch.equal(tensor.dequantize(torch.float32), expected)
    assert torch.equal(tensor.rows(torch.tensor([[3, 1]])).dequantize(), expected[[3, 1]].unsqueeze(0))
    meta = tensor.to("meta").dequantize(torch.bfloat16)  # device-agnostic: runs wherever the blocks are
    assert meta.device.type == "meta" and meta.shape == expected.shape


def test_blocks_must_fit_the_shape():
    with pytest.raises(ValueError, match="whole Q8_0 blocks"):
        quantized_tensor(torch.zeros(34, dtype=torch.uint8), "Q8_0", (1, 40))
    with pytest.raises(ValueError, match="needs 68"):
        quantized_tensor(torch.zeros(34, dtype=torch.uint8), "Q8_0", (2, 32))


def test_the_writer_reproduces_city96s_names_and_metadata(gguf_files):
    reader = gguf.GGUFReader(gguf_files["Q4_K_M"])
    names = {tensor.name: tensor for tensor in reader.tensors}
    metadata = read_gguf_header(gguf_files["Q4_K_M"]).metadata
    assert metadata["general.architecture"] == "t5encoder" and metadata["t5encoder.block_count"] == 2
    assert metadata["tokenizer.ggml.model"] == "t5" and metadata["general.file_type"] == 15  # MOSTLY_Q4_K_M
    assert set(names) >= {"token_embd.weight", "enc.output_norm.weight", "enc.blk.0.attn_rel_b.weight",
                          "enc.blk.1.ffn_gate.weight", "enc.blk.1.ffn_up.weight", "enc.blk.1.ffn_down.weight"}
    assert len(names) == 2 * 9 + 3 and "enc.blk.1.attn_rel_b.weight" not in names
    assert names["enc.blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert names["enc.blk.1.attn_v.weight"].tensor_type.name == "Q6_K"  # llama.cpp's use_more_bits (last eighth)
    assert names["enc.blk.0.attn_q.weight"].tensor_type.name == "Q4_K"
    assert gguf_name("encoder.block.1.layer.1.DenseReluDense.wi_1.weight") == "enc.blk.1.ffn_up.weight"


def test_f32_gguf_gives_the_embedding_of_the_same_weights_in_safetensors(weights, gguf_files, tmp_path):
    path = save_safetensors(weights, tmp_path / "t5.safetensors")
    ids = _ids()
    with open_model_file(path, FileKind.T5_ENCODER)[0] as file:
        expected = load_t5_encoder(file, mode="cpu", compute_dtype=torch.float32).encode(ids)
    with open_model_file(gguf_files["F32"], FileKind.T5_ENCODER)[0] as file:
        got = load_t5_encoder(file, mode="cpu", compute_dtype=torch.float32).encode(ids)
    assert (got - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_quantized_files_compute_with_exactly_the_dequantized_weights(weights, gguf_files, file_type):
    """The product's encode of a quantized file equals the encode of its weights dequantized by the gguf package
    (≤ 1e-5), whether the weights are dequantized at every encode or kept dequantized."""
    ids = _ids()
    reference = load_t5_encoder(dequantized_state_dict(weights, file_type), mode="cpu", compute_dtype=torch.float32)
    expected = reference.encode(ids)
    for budget in (0, None):
        with GGUFFile(gguf_files[file_type]) as file:
            encoder = load_t5_encoder(file, mode="cpu", compute_dtype=torch.float32, keep_converted_bytes=budget)
        assert (encoder.encode(ids) - expected).abs().max() <= 1e-5


def test_quantization_error_grows_as_bits_shrink(weights, gguf_files, capsys):
    """Relative embedding error of each file type against the float32 weights (printed; random weights amplify
    errors far more than trained T5 does, so only the order is checked)."""
    ids = _ids()
    original = load_t5_encoder(weights, mode="cpu", compute_dtype=torch.float32).encode(ids)
    errors = {}
    for file_type in FILE_TYPES:
        with GGUFFile(gguf_files[file_type]) as file:
            got = load_t5_encoder(file, mode="cpu", compute_dtype=torch.float32).encode(ids)
        errors[file_type] = ((got - original).norm() / original.norm()).item()
    with capsys.disabled():
        print("\nrelative embedding error vs float32:", ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
    ladder = [errors[name] for name in ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_L")]
    assert ladder == sorted(ladder) and ladder[0] < 0.01


def test_quantized_weights_stay_quantized_in_ram(gguf_files):
    with GGUFFile(gguf_files["Q4_K_M"]) as file:
        tensor_bytes = sum(entry.nbytes for entry in file.header.tensors.values())
        encoder = load_t5_encoder(file, mode="cpu", compute_dtype=torch.float32, keep_converted_bytes=0)
    stored = encoder.stored_tensors()
    assert isinstance(stored["encoder.block.1.layer.1.DenseReluDense.wo.weight"], QuantizedTensor)
    assert isinstance(stored["shared.weight"], QuantizedTensor)  # rows are gathered, then dequantized
    assert encoder.storage_bytes() == tensor_bytes
    assert encoder.encode(_ids()).shape == (2, 24, 256)


def test_stream_mode_moves_blocks_not_floats(gguf_files):
    with GGUFFile(gguf_files["Q8_0"]) as file:
        encoder = load_t5_encoder(file, mode="stream", device="meta", compute_dtype=torch.bfloat16)
    assert {t.device.type for t in encoder.stored_tensors().values()} == {"cpu"}
    assert encoder.encode(_ids()).device.type == "meta"


def test_prefixed_gguf_files_load(weights, gguf_files, tmp_path):
    path = write_gguf_t5(tmp_path / "prefixed.gguf", weights, "Q8_0", prefix="text_encoders.t5xxl.transformer.")
    info = classify(path)
    assert info.key_prefix == "text_encoders.t5xxl.transformer."
    ids = _ids()
    with GGUFFile(path) as prefixed, GGUFFile(gguf_files["Q8_0"]) as plain:
        expected = load_t5_encoder(plain, mode="cpu").encode(ids)
        assert torch.equal(load_t5_encoder(prefixed, mode="cpu").encode(ids), expected)


def test_classified_by_content_and_found_as_t5(gguf_files, tmp_path):
    info = classify(gguf_files["Q4_K_M"])
    assert info.kind is FileKind.T5_ENCODER and info.file_format == "gguf"
    assert info.description == "T5 encoder (GGUF Q4_K_M)"
    assert classify(gguf_files["F32"]).description == "T5 encoder (GGUF F32)"
    renamed = tmp_path / "models" / "text_encoder" / "my_t5.bin.gguf"
    renamed.parent.mkdir(parents=True)
    renamed.write_bytes(open(gguf_files["Q5_K_M"], "rb").read())
    (tmp_path / "models" / "other.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 4)
    finder = ModelFinder([tmp_path / "models"])
    assert found_paths(finder, "t5") == [str(renamed)]
    assert found_paths(finder, "checkpoint") == []
    assert any(path.endswith("other.gguf") and "GGUF" in reason for path, reason in finder.skipped)


def _gguf_of(tmp_path, name: str, arch: str, tensors: dict[str, np.ndarray]) -> str:
    path = str(tmp_path / name)
    writer = gguf.GGUFWriter(path, arch)
    for tensor_name, value in tensors.items():
        writer.add_tensor(tensor_name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_other_gguf_models_are_refused_in_one_line(tmp_path):
    llama = _gguf_of(tmp_path, "llama.gguf", "llama", {"token_embd.weight": np.zeros((8, 32), np.float32),
                                                       "blk.0.attn_q.weight": np.zeros((32, 32), np.float32)})
    with pytest.raises(ModelFileError) as caught:
        open_model_file(llama, FileKind.T5_ENCODER)
    assert str(caught.value) == (f"{llama}: is a GGUF 'llama' model without T5 encoder tensors "
                                 "(enc.blk.0.attn_q.weight); only T5 encoders are read from GGUF files "
                                 "(expected a T5 encoder (.safetensors or .gguf))")
    umt5 = _gguf_of(tmp_path, "umt5.gguf", "t5encoder", {
        "token_embd.weight": np.zeros((8, 32), np.float32), "enc.blk.0.attn_q.weight": np.zeros((32, 32), np.float32),
        "enc.blk.0.attn_rel_b.weight": np.zeros((32, 4), np.float32),
        "enc.blk.1.attn_rel_b.weight": np.zeros((32, 4), np.float32)})
    with pytest.raises(ModelFileError, match="UMT5"):
        classify(umt5)


def test_a_tensor_type_we_cannot_dequantize_is_named(weights, tmp_path):
    path = str(tmp_path / "q2k.gguf")
    writer = gguf.GGUFWriter(path, "t5encoder")
    for key, value in weights.items():
        name = gguf_name(key)
        if name == "enc.blk.1.ffn_down.weight":  # 256 values per Q2_K block of 84 bytes
            raw = np.zeros((value.shape[0], value.shape[1] // 256 * 84), np.uint8)
            writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType.Q2_K)
        else:
            writer.add_tensor(name, value.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with GGUFFile(path) as file, pytest.raises(ModelFileError) as caught:
        load_t5_encoder(file, mode="cpu")
    assert str(caught.value).startswith(f"{path}: tensor 'enc.blk.1.ffn_down.weight' is Q2_K, which TinyBreaker "
                                        "does not read (expected a GGUF T5 of F32, F16, BF16, Q8_0")


@pytest.mark.parametrize("cut, problem", [
    (0.5, "truncated: {size} bytes on disk, the tensor data is cut short (incomplete download?)"),
    (None, "corrupt or truncated GGUF header"),
])
def test_truncated_files_give_one_line_errors(gguf_files, tmp_path, cut, problem):
    data = open(gguf_files["Q8_0"], "rb").read()
    cut_at = int(len(data) * cut) if cut else 40  # inside the metadata
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:cut_at])
    with pytest.raises(ModelFileError) as caught:
        open_model_file(path, FileKind.T5_ENCODER)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert problem.format(size=cut_at) in message
    assert message.endswith("(expected a T5 encoder (.safetensors or .gguf))")
    finder = ModelFinder([tmp_path])
    assert finder.candidates("t5") == []
    assert problem.format(size=cut_at) in dict(finder.skipped)[str(path)]


def test_without_the_gguf_package_everything_else_runs_and_gguf_files_say_what_to_install(gguf_files, tmp_path):
    script = f"""
import sys
sys.modules["gguf"] = None  # as on a host without the package: importing it raises ImportError
import tinybreaker_ext.pipeline, tinybreaker_ext.files.classify as classify
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.finder import ModelFinder
try:
    classify.open_model_file({gguf_files['Q8_0']!r}, classify.FileKind.T5_ENCODER)
except ModelFileError as error:
    print(error)
print(ModelFinder([{os.path.dirname(gguf_files['Q8_0'])!r}]).candidates("t5"))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    first, second = result.stdout.splitlines()
    assert first == (f"{gguf_files['Q8_0']}: is a GGUF file; reading GGUF files needs the 'gguf' package "
                     "(pip install gguf) (expected a T5 encoder (.safetensors or .gguf))")
    assert second == "[]"


def test_the_pipeline_encodes_with_a_gguf_t5(tiny_model_folder, tmp_path):
    from safetensors.torch import load_file

    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    _folder, paths = tiny_model_folder
    gguf_path = write_gguf_t5(tmp_path / "t5.gguf", load_file(paths["t5"]), "F32")  # fp8 values, exact in F32
    results = []
    for t5_path in (paths["t5"], gguf_path):
        pipeline = TinyBreakerPipeline(paths["checkpoint1"], t5_path, tokenizer_path=paths["t5_tokenizer"])
        results.append(pipeline.encode("a red (cube:1.2)", t5_mode="cpu"))
    assert torch.equal(results[0], results[1])

"""T5 compute dtype policy, bfloat16 numerics against transformers, and weights kept converted between encodes."""

from __future__ import annotations

import weakref

import pytest
import torch

from builders.t5 import FP8_E4M3, t5_state_dict, upcast_t5_state_dict
from tinybreaker_ext.models import t5_policy
from tinybreaker_ext.models.t5_encoder import load_t5_encoder
from tinybreaker_ext.models.t5_policy import KEEP_FREE_BYTES, conversion_budget, resolve_compute_dtype

TINY = dict(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64, vocab_size=256)


def _ids(length=40, batch=2, seed=1):
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


def transformers_t5(sd: dict, config, dtype: torch.dtype):
    """transformers' own T5EncoderModel holding the same weights in ``dtype`` (what from_pretrained(dtype=...)
    builds for bfloat16: every module in bfloat16)."""
    from transformers import T5EncoderModel

    model = T5EncoderModel(config).eval()
    model.load_state_dict(upcast_t5_state_dict(sd), strict=False)
    return model.to(dtype)


def test_auto_picks_bfloat16_only_where_it_is_native(monkeypatch):
    monkeypatch.setattr(t5_policy, "bf16_is_fast", lambda device: True)
    assert resolve_compute_dtype(None, "cpu") == torch.bfloat16
    monkeypatch.setattr(t5_policy, "bf16_is_fast", lambda device: False)
    assert resolve_compute_dtype(None, "cpu") == torch.float32
    assert resolve_compute_dtype(torch.bfloat16, "cpu") == torch.bfloat16  # a caller's dtype wins


def test_bf16_is_fast_asks_the_hardware(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert t5_policy.bf16_is_fast("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not t5_policy.bf16_is_fast("cpu")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))
    assert not t5_policy.bf16_is_fast("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 6))
    assert t5_policy.bf16_is_fast("cuda")
    assert not t5_policy.bf16_is_fast("meta")


@pytest.mark.parametrize("mode", ["cpu", "stream"])
@pytest.mark.parametrize("dtype", [FP8_E4M3, torch.bfloat16, torch.float32])
def test_bfloat16_compute_is_bit_identical_to_transformers_in_bfloat16(mode, dtype):
    sd = t5_state_dict(**TINY, dtype=dtype)
    encoder = load_t5_encoder(sd, mode=mode, compute_dtype=torch.bfloat16)
    ids = _ids()
    with torch.no_grad():
        expected = transformers_t5(sd, encoder.config, torch.bfloat16)(input_ids=ids)[0].float()
    assert torch.equal(encoder.encode(ids), expected)


def test_float32_compute_matches_transformers_in_float32():
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    encoder = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.float32)
    ids = _ids()
    with torch.no_grad():
        expected = transformers_t5(sd, encoder.config, torch.float32)(input_ids=ids)[0]
    torch.testing.assert_close(encoder.encode(ids), expected, atol=1e-5, rtol=1e-5)


def test_conversion_budget_policy(monkeypatch):
    monkeypatch.setattr(t5_policy, "available_ram_bytes", lambda: 100 << 30)
    assert conversion_budget("stream", "cpu") == 0
    monkeypatch.setattr(t5_policy, "available_ram_bytes", lambda: KEEP_FREE_BYTES + 123)
    assert conversion_budget("cpu", "cpu") == 123
    assert conversion_budget("cpu", "cuda") == 123  # cpu mode holds the weights in RAM
    assert conversion_budget("cpu", "cpu", stored_bytes=100) == 23
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (KEEP_FREE_BYTES - 1, 0))
    assert conversion_budget("gpu", "cuda") == 0
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (KEEP_FREE_BYTES + 7, 0))
    assert conversion_budget("gpu", "cuda") == 7
    assert conversion_budget("gpu", "meta") == 0  # free memory unknown: keep nothing


def _linear_keys(encoder):
    return [key for key in encoder.stored_tensors() if key.endswith(("q.weight", "k.weight", "v.weight", "o.weight",
                                                                        "wi_0.weight", "wi_1.weight", "wo.weight"))]


def test_weights_are_kept_converted_within_the_budget_and_results_do_not_change():
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    ids = _ids()
    none = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=0)
    every = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=1 << 30)
    some = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=2 * 32 * 64)
    assert none.converted_bytes == 0
    assert {t.dtype for t in none.stored_tensors().values()} == {FP8_E4M3}
    assert {every.stored_tensors()[key].dtype for key in _linear_keys(every)} == {torch.bfloat16}
    assert every.stored_tensors()["shared.weight"].dtype == FP8_E4M3  # rows are gathered, then converted
    assert every.storage_bytes() == none.storage_bytes() + every.converted_bytes
    converted = [key for key in _linear_keys(some) if some.stored_tensors()[key].dtype == torch.bfloat16]
    assert 0 < len(converted) < len(_linear_keys(some)) and 0 < some.converted_bytes <= 2 * 32 * 64
    assert torch.equal(none.encode(ids), every.encode(ids)) and torch.equal(none.encode(ids), some.encode(ids))


def test_kept_weights_are_used_as_they_are_at_every_encode():
    """No conversion, no copy: each Linear computes with the very tensor the encoder keeps."""
    encoder = load_t5_encoder(t5_state_dict(**TINY, dtype=FP8_E4M3), mode="cpu", compute_dtype=torch.bfloat16,
                              keep_converted_bytes=1 << 30)
    query = encoder._model.encoder.block[1].layer[0].SelfAttention.q
    seen = []
    query.register_forward_pre_hook(lambda module, args: seen.append(module.weight.data_ptr()))
    encoder.encode(_ids())
    encoder.encode(_ids(seed=2))
    kept = encoder.stored_tensors()["encoder.block.1.layer.0.SelfAttention.q.weight"].data_ptr()
    assert seen == [kept, kept]


def test_memory_saving_conversions_happen_even_without_a_budget():
    sd = t5_state_dict(**TINY, dtype=torch.float32)
    encoder = load_t5_encoder(sd, mode="stream", compute_dtype=torch.bfloat16)
    assert {encoder.stored_tensors()[key].dtype for key in _linear_keys(encoder)} == {torch.bfloat16}
    assert encoder.converted_bytes < 0


class _TrackedReads(dict):
    """A state dict that hands out fresh copies and remembers them weakly, to see which ones are still alive."""

    def __init__(self, sd: dict):
        super().__init__(sd)
        self.handed_out: list[tuple[str, weakref.ref]] = []
        self.alive_at_read: list[list[str]] = []

    def __getitem__(self, key):
        self.alive_at_read.append([k for k, ref in self.handed_out if ref() is not None])
        tensor = super().__getitem__(key).clone()
        self.handed_out.append((key, weakref.ref(tensor)))
        return tensor


def test_a_kept_converted_weight_frees_its_stored_form_before_the_next_read():
    """Converting after reading everything would hold the whole file and its converted copy at the peak."""
    sd = _TrackedReads(t5_state_dict(**TINY, dtype=FP8_E4M3))
    encoder = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=1 << 30)
    assert {encoder.stored_tensors()[key].dtype for key in _linear_keys(encoder)} == {torch.bfloat16}
    assert sd.alive_at_read[-1] == ["shared.weight"]  # the embedding stays fp8 (rows are converted)
    assert all(set(alive) <= {"shared.weight"} for alive in sd.alive_at_read)


def test_a_file_s_converted_weights_are_read_into_one_reused_buffer(tmp_path, monkeypatch):
    """Fresh read buffers, freed between the larger converted weights, stayed in the C heap (0.5 GB at T5-XXL's
    peak): the loader reads every weight it converts into one buffer, grown only when a larger one comes."""
    from safetensors.torch import save_file

    from tinybreaker_ext.files import safetensors_file
    from tinybreaker_ext.files.safetensors_file import SafetensorsFile

    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    path = tmp_path / "t5.safetensors"
    save_file(sd, str(path))
    buffers, plain_reads = set(), []
    original = safetensors_file.SafetensorsFile._read

    def tracked(self, full_key, into=None):
        (plain_reads.append(full_key) if into is None else buffers.add(into.data_ptr()))
        return original(self, full_key, into)

    monkeypatch.setattr(safetensors_file.SafetensorsFile, "_read", tracked)
    with SafetensorsFile(path) as file:
        encoder = load_t5_encoder(file, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=1 << 30)
    assert plain_reads == ["shared.weight"]  # kept as stored: its own memory
    assert 1 <= len(buffers) <= 2  # attention-sized, then feed-forward-sized
    reference = load_t5_encoder(sd, mode="cpu", compute_dtype=torch.bfloat16, keep_converted_bytes=1 << 30)
    assert torch.equal(encoder.encode(_ids()), reference.encode(_ids()))

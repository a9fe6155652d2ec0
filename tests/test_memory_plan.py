"""Memory preflight from headers: per-stage estimates, the auto T5 placement, and messages saying what would fit."""

from __future__ import annotations

import pytest
import torch

import tinybreaker_ext.files.tensor_bytes as tensor_bytes
import tinybreaker_ext.memory_plan as memory_plan
from tinybreaker_ext.errors import NotEnoughMemoryError
from tinybreaker_ext.files.classify import BASE_PREFIX, TRANSCODER_PREFIX, header_of
from tinybreaker_ext.memory_plan import T5Footprint, plan_memory, t5_footprint
from tinybreaker_ext.models.t5_encoder import ACTIVATION_RESERVE_BYTES as ACT

GB = 10**9
TINY_T5 = dict(d_model=32, d_ff=64, inner=32)  # tests/builders/tinybreaker_files.py's T5


@pytest.fixture(scope="module")
def files(tiny_model_folder):
    return tiny_model_folder[1]


def _bytes_under(path, prefix, element_size=None):
    entries = [e for k, e in header_of(path).tensors.items() if k.startswith(prefix)]
    if element_size is None:
        return sum(e.nbytes for e in entries)
    return sum(torch.Size(e.shape).numel() for e in entries) * element_size


def test_t5_footprint_comes_from_the_header(files, monkeypatch):
    monkeypatch.setattr(tensor_bytes, "read_bytes", lambda *a: pytest.fail("tensor data was read"))
    footprint = t5_footprint(files["t5"])
    feed_forward = 3 * TINY_T5["d_ff"] * TINY_T5["d_model"] + TINY_T5["d_model"]  # wi_0, wi_1, wo + its norm
    assert footprint.stored_bytes == _bytes_under(files["t5"], "")
    assert footprint.largest_weight_numel == TINY_T5["d_ff"] * TINY_T5["d_model"]  # wi_0 (wi_1 and wo as big)
    assert footprint.largest_sublayer_stored_bytes == feed_forward  # every tensor of this file is fp8


def test_gguf_t5_footprint_counts_the_quantized_bytes(tmp_path):
    pytest.importorskip("gguf")
    from builders.gguf_files import write_gguf_t5
    from builders.t5 import t5_state_dict

    path = write_gguf_t5(tmp_path / "t5.gguf", t5_state_dict(d_model=256, num_layers=2, num_heads=4, d_kv=64,
                                                             d_ff=512, vocab_size=300), "Q4_K_M")
    footprint = t5_footprint(path)
    assert footprint.stored_bytes == sum(e.nbytes for e in header_of(path).tensors.values())
    assert footprint.largest_weight_numel == 512 * 256
    assert footprint.largest_sublayer_stored_bytes < 3 * 512 * 256 + 256  # about 4.5-6 bits a value


def test_cpu_device_counts_everything_as_ram(files):
    plan = plan_memory(files["t5"], files["checkpoint1"], device="cpu", model_dtype=torch.float32,
                       t5_dtype=torch.float32, free_ram=64 * GB)
    t5 = t5_footprint(files["t5"])
    pixart = _bytes_under(files["checkpoint1"], BASE_PREFIX, 4)
    transcoder = _bytes_under(files["checkpoint1"], TRANSCODER_PREFIX, 4)
    assert plan.fits and plan.t5_mode == "cpu" and plan.device_peak == 0
    encode = {stage.stage: stage for stage in plan.stages}["encode"]
    assert encode.ram_bytes == t5.stored_bytes + t5.largest_weight_numel * 4 + pixart + transcoder + ACT
    assert plan.message.startswith("T5 cpu (float32): needs RAM ")
    plan.check()


def _stream_device_need(files) -> int:
    """Device bytes of the streaming plan (bf16 compute, fp16 models): the largest of its three stages."""
    t5 = t5_footprint(files["t5"])
    pixart = _bytes_under(files["checkpoint1"], BASE_PREFIX, 2)
    transcoder = _bytes_under(files["checkpoint1"], TRANSCODER_PREFIX, 2)
    return ACT + max(t5.largest_weight_numel * 2 + 2 * t5.largest_sublayer_stored_bytes, pixart, transcoder)


def test_auto_keeps_t5_on_the_gpu_when_it_fits_next_to_pixart_else_streams(files):
    common = dict(device="cuda", model_dtype=torch.float16, t5_dtype=torch.bfloat16, free_ram=64 * GB)
    resident = dict(common, placement_policy="gpu")
    roomy = plan_memory(files["t5"], files["checkpoint1"], free_device=24 * GB, **resident)
    assert roomy.fits and roomy.t5_mode == "gpu"
    t5 = t5_footprint(files["t5"])
    models = _bytes_under(files["checkpoint1"], BASE_PREFIX, 2) + _bytes_under(files["checkpoint1"],
                                                                                 TRANSCODER_PREFIX, 2)
    base = {stage.stage: stage for stage in roomy.stages}["base"]
    assert base.device_bytes == t5.stored_bytes + models + ACT  # a resident T5 stays next to PixArt
    needed = plan_memory(files["t5"], files["checkpoint1"], t5_mode="stream", free_device=24 * GB,
                         **resident).device_peak
    tight = plan_memory(files["t5"], files["checkpoint1"], free_device=needed, **resident)
    assert tight.fits and tight.t5_mode == "stream"
    assert not plan_memory(files["t5"], files["checkpoint1"], free_device=needed - 1, **resident).fits


def test_auto_streams_beside_an_offloading_placement_however_much_room(files):
    """The WebUI's placements give the device back to the host after each stage: a resident T5 would keep it."""
    common = dict(device="cuda", model_dtype=torch.float16, t5_dtype=torch.bfloat16, free_ram=64 * GB)
    plan = plan_memory(files["t5"], files["checkpoint1"], free_device=24 * GB, placement_policy="offload", **common)
    assert plan.fits and plan.t5_mode == "stream"
    t5 = t5_footprint(files["t5"])
    tight = plan_memory(files["t5"], files["checkpoint1"], free_device=_stream_device_need(files), **common)
    assert tight.fits and tight.t5_mode == "stream"
    refused = plan_memory(files["t5"], files["checkpoint1"], free_device=_stream_device_need(files) - 1, **common)
    assert not refused.fits and refused.field == "t5_mode"
    encode = {stage.stage: stage for stage in tight.stages}["encode"]
    assert encode.device_bytes == t5.largest_weight_numel * 2 + 2 * t5.largest_sublayer_stored_bytes + ACT
    assert encode.ram_bytes >= t5.stored_bytes


def test_a_resident_placement_keeps_every_model_on_the_device(files):
    plan = plan_memory(files["t5"], files["checkpoint1"], device="cuda", model_dtype=torch.float16, t5_mode="gpu",
                       t5_dtype=torch.bfloat16, placement_policy="gpu", free_ram=64 * GB, free_device=24 * GB)
    t5 = t5_footprint(files["t5"])
    models = _bytes_under(files["checkpoint1"], BASE_PREFIX, 2) + _bytes_under(files["checkpoint1"],
                                                                                 TRANSCODER_PREFIX, 2)
    assert [stage.device_bytes for stage in plan.stages] == [
        t5.stored_bytes + t5.largest_weight_numel * 2 + models + ACT, t5.stored_bytes + models + ACT,
        t5.stored_bytes + models + ACT]
    assert {stage.ram_bytes for stage in plan.stages} == {0}


def test_an_explicit_gpu_mode_that_does_not_fit_says_use_stream(files):
    plan = plan_memory(files["t5"], files["checkpoint1"], device="cuda", model_dtype=torch.float16, t5_mode="gpu",
                       t5_dtype=torch.bfloat16, free_ram=64 * GB, free_device=_stream_device_need(files))
    assert not plan.fits and plan.message.startswith("not enough memory for T5 gpu: needs ")
    assert plan.message.endswith("; use stream") and plan.field == "t5_mode"
    with pytest.raises(NotEnoughMemoryError, match="use stream"):
        plan.check()


def test_short_ram_suggests_the_largest_smaller_gguf_t5_that_fits(files, monkeypatch):
    """A full-size fp8 T5-XXL (4.9 GB) on a 16 GB machine where 6 GB are free for TinyBreaker."""
    full = T5Footprint(stored_bytes=4_900_000_000, largest_weight_numel=10240 * 4096,
                       largest_sublayer_stored_bytes=3 * 10240 * 4096 + 4 * 4096)
    monkeypatch.setattr(memory_plan, "t5_footprint", lambda path, info=None: full)
    common = dict(device="cpu", model_dtype=torch.float32, t5_dtype=torch.bfloat16)
    others = plan_memory(files["t5"], files["checkpoint1"], free_ram=100 * GB, **common).ram_peak - full.stored_bytes
    plan = plan_memory(files["t5"], files["checkpoint1"], free_ram=others + int(3.5 * GB), **common)
    assert not plan.fits and plan.message.endswith("use a Q5_K_M T5 GGUF (3.4 GB)") and plan.field == "t5_file"
    plan = plan_memory(files["t5"], files["checkpoint1"], free_ram=others + int(2.95 * GB), **common)
    assert plan.message.endswith("use a Q4_K_M T5 GGUF (2.9 GB; below Q5_K_M quality drops)")
    plan = plan_memory(files["t5"], files["checkpoint1"], free_ram=others + GB, **common)
    assert plan.message.endswith(f"free {(plan.ram_peak - others - GB) / GB:.1f} GB of RAM")

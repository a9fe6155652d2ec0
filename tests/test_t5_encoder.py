"""T5 encoder: storage dtypes kept, results equal to plain fp32 references, memory behaviour of the modes, errors."""

from __future__ import annotations

import gc
import math
import os

import pytest
import torch
from safetensors.torch import load_file

from builders.common import save_safetensors
from builders.t5 import FP8_E4M3, T5_XXL_SHAPES, t5_state_dict, upcast_t5_state_dict
from tinybreaker_ext.errors import ModelFileError, ParameterError
from tinybreaker_ext.models.t5_encoder import ACTIVATION_RESERVE_BYTES, choose_mode, infer_t5_config, load_t5_encoder

TINY = dict(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64, vocab_size=256)


def load_fp32(state_dict, **options):
    """The loader with float32 compute (``auto`` would pick bfloat16 on CPUs that run it natively)."""
    options.setdefault("compute_dtype", torch.float32)
    return load_t5_encoder(state_dict, **options)


def _ids(length=40, batch=2, seed=1, vocab=256):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def reference_t5(sd: dict, ids: torch.Tensor, *, heads: int, eps: float = 1e-6, max_distance: int = 128):
    """T5 v1.1 encoder written from the paper/mesh-tf formulas in float64: RMS norm, unscaled attention with a
    bidirectional bucketed relative bias from block 0, gated tanh-GELU feed-forward, final norm."""
    w = {k: v.double() for k, v in sd.items()}
    x = w["shared.weight"][ids]
    length = ids.shape[1]
    buckets = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape[0]
    half = buckets // 2
    exact = half // 2
    bucket = torch.empty(length, length, dtype=torch.long)
    for i in range(length):
        for j in range(length):
            distance = j - i
            base = half if distance > 0 else 0
            n = abs(distance)
            if n < exact:
                bucket[i, j] = base + n
            else:
                large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact))
                bucket[i, j] = base + min(large, half - 1)
    bias = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][bucket].permute(2, 0, 1)

    def rms(h, weight):
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight

    def gelu_tanh(h):
        return 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))

    layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.block."))
    batch = ids.shape[0]
    for b in range(layers):
        p = f"encoder.block.{b}.layer."
        h = rms(x, w[p + "0.layer_norm.weight"])
        q, k, v = (h @ w[f"{p}0.SelfAttention.{n}.weight"].T for n in "qkv")
        q, k, v = (t.view(batch, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        attention = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v
        x = x + attention.transpose(1, 2).reshape(batch, length, -1) @ w[p + "0.SelfAttention.o.weight"].T
        h = rms(x, w[p + "1.layer_norm.weight"])
        gate = gelu_tanh(h @ w[p + "1.DenseReluDense.wi_0.weight"].T) * (h @ w[p + "1.DenseReluDense.wi_1.weight"].T)
        x = x + gate @ w[p + "1.DenseReluDense.wo.weight"].T
    return rms(x, w["encoder.final_layer_norm.weight"])


def hf_reference(sd: dict, config, ids: torch.Tensor) -> torch.Tensor:
    from transformers import T5EncoderModel

    model = T5EncoderModel(config).eval()
    model.load_state_dict(upcast_t5_state_dict(sd), strict=False)
    with torch.no_grad():
        return model(input_ids=ids)[0]


def test_config_is_inferred_from_shapes():
    config = infer_t5_config(t5_state_dict(**TINY))
    assert (config.d_model, config.num_layers, config.num_heads, config.d_kv, config.d_ff, config.vocab_size,
            config.relative_attention_num_buckets, config.is_gated_act) == (32, 2, 4, 8, 64, 256, 32, True)
    xxl = infer_t5_config(t5_state_dict(**T5_XXL_SHAPES, device="meta"))
    assert (xxl.d_model, xxl.num_layers, xxl.num_heads, xxl.d_kv, xxl.d_ff, xxl.vocab_size) == \
        (4096, 24, 64, 64, 10240, 32128)


def test_full_size_layout_is_consumed_completely():
    sd = t5_state_dict(**T5_XXL_SHAPES, dtype=FP8_E4M3, device="meta", with_embed_tokens=True)
    encoder = load_fp32(sd, mode="gpu", device="meta")  # refuses missing or unexpected keys; meta: no memory
    blocks = 24 * (4 * 4096 * 4096 + 2 * 4096 + 3 * 4096 * 10240)
    assert encoder.storage_bytes() == 32128 * 4096 + blocks + 32 * 64 + 4096  # one byte per fp8 weight
    assert {t.dtype for t in encoder.stored_tensors().values()} == {FP8_E4M3}


@pytest.mark.parametrize("dtype", [FP8_E4M3, torch.bfloat16, torch.float16, torch.float32])
def test_result_equals_fp32_references_built_from_upcast_weights(dtype):
    sd = t5_state_dict(**TINY, dtype=dtype)
    encoder = load_fp32(sd, mode="cpu")
    ids = _ids()
    out = encoder.encode(ids)
    assert out.dtype == torch.float32 and out.shape == (2, 40, 32)
    torch.testing.assert_close(out, hf_reference(sd, encoder.config, ids), atol=1e-5, rtol=1e-5)
    independent = reference_t5(upcast_t5_state_dict(sd), ids, heads=4).float()
    torch.testing.assert_close(out, independent, atol=2e-5, rtol=2e-5)


def test_fp8_weights_stay_fp8_and_memory_matches_the_file(tmp_path):
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    path = save_safetensors(sd, tmp_path / "t5_fp8.safetensors")
    with open(path, "rb") as f:
        header = 8 + int.from_bytes(f.read(8), "little")
    encoder = load_fp32(load_file(path), mode="cpu", keep_converted_bytes=0)
    assert {t.dtype for t in encoder.stored_tensors().values()} == {FP8_E4M3}
    assert encoder.storage_bytes() == os.path.getsize(path) - header
    encoder.encode(_ids())
    # the transformers module keeps no weights of its own between sub-layers
    assert sum(p.numel() for p in encoder._model.parameters()) == 0


def test_scaled_fp8_applies_the_scales():
    sd = t5_state_dict(**TINY, scaled_fp8=True)
    assert "scaled_fp8" in sd and any(k.endswith("scale_weight") for k in sd)
    encoder = load_fp32(sd, mode="cpu")
    ids = _ids()
    out = encoder.encode(ids)
    torch.testing.assert_close(out, hf_reference(sd, encoder.config, ids), atol=1e-5, rtol=1e-5)
    unscaled = {k: v for k, v in sd.items() if not k.endswith("scale_weight")}
    assert not torch.allclose(load_fp32(unscaled, mode="cpu").encode(ids), out, atol=1e-2)


def test_cpu_and_stream_modes_give_identical_results():
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    ids = _ids()
    assert torch.equal(load_fp32(sd, mode="cpu").encode(ids), load_fp32(sd, mode="stream").encode(ids))


def _meta_bytes() -> int:
    """Bytes of every live tensor on the meta device, found through the garbage collector (independent of how the
    encoder stores its copies)."""
    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and obj.device.type == "meta" and id(obj) not in seen:
                seen.add(id(obj))
                total += obj.numel() * obj.element_size()
        except Exception:  # some tracked objects misbehave when inspected
            continue
    return total


def test_stream_mode_holds_two_sub_layers_stored_and_one_weight_upcast_on_the_compute_device():
    """The meta device stands in for a GPU: storage stays on the CPU, anything on 'meta' is what streaming put on
    the compute device. Test hooks registered after the encoder's see each module while it runs: its own weight in
    float32, its sub-layer's fp8 weights (copied as one group) and the next sub-layer's (the prefetch), and nothing
    else."""
    config = dict(TINY, d_model=64, d_ff=256)
    sd = t5_state_dict(**config, dtype=FP8_E4M3)
    encoder = load_fp32(sd, mode="stream", device="meta")
    assert {t.device.type for t in encoder.stored_tensors().values()} == {"cpu"}
    assert {t.dtype for t in encoder.stored_tensors().values()} == {FP8_E4M3}  # stream keeps nothing converted
    model = encoder._model
    sublayers = [layer for block in model.encoder.block for layer in block.layer] + [model.encoder.final_layer_norm]
    peaks = []  # (sub-layer index, the running module's weight numel, meta bytes)
    for index, sublayer in enumerate(sublayers):
        for module in sublayer.modules():
            if next(iter(module.parameters(recurse=False)), None) is not None:
                module.register_forward_pre_hook(
                    lambda m, a, index=index: peaks.append((index, m.weight.numel(), _meta_bytes())))
    ids = _ids(length=8, batch=1)
    gc.collect()
    baseline = _meta_bytes()  # meta tensors other tests may have left alive
    out = encoder.encode(ids)
    assert out.device.type == "meta" and out.shape == (1, 8, 64)

    inner, d_model, d_ff = 4 * 8, 64, 256
    attention = [4 * inner * d_model + d_model + 32 * 4, 4 * inner * d_model + d_model]  # block 0 has the bias
    feed_forward = 3 * d_ff * d_model + d_model
    stored = [attention[0], feed_forward, attention[1], feed_forward, d_model, 0]  # fp8: a byte each; none after
    # room for hidden states, bias and mask of 8 tokens, and wo's inputs (gelu(wi_0 x) * wi_1 x, d_ff wide); less
    # than the two other feed-forward weights a whole upcast sub-layer would add
    activations = 8 * d_ff * 4 * 8
    # every module with weights ran once: q, k, v, o, bias and norm (block 0), wi_0, wi_1, wo and norm, …
    assert len(peaks) == 6 + 4 + 5 + 4 + 1
    for index, weight_numel, peak in peaks:
        running = stored[index] if index > 0 else 0  # the first sub-layer is upcast straight from RAM
        weights = weight_numel * 4 + running + stored[index + 1]
        assert weights <= peak - baseline <= weights + activations
    assert max(numel for _, numel, _ in peaks) == d_ff * d_model
    # what the pipeline asks the host to free: the biggest weight upcast, the biggest neighbouring pair stored
    assert encoder.device_bytes() == d_ff * d_model * 4 + max(a + b for a, b in zip(stored, stored[1:]))
    del out
    gc.collect()
    assert _meta_bytes() - baseline < activations  # nothing left behind after encode


def test_fp8_nan_codes_in_the_embedding_become_zero_inputs():
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    sd["shared.weight"] = sd["shared.weight"].clone()
    sd["shared.weight"].view(torch.uint8)[7, :5] = 0x7F  # NaN in float8_e4m3fn
    ids = torch.tensor([[7, 8, 9, 10]])
    out = load_fp32(sd, mode="cpu").encode(ids)
    assert torch.isfinite(out).all()
    clean = upcast_t5_state_dict(sd)
    clean["shared.weight"] = torch.nan_to_num(clean["shared.weight"])
    torch.testing.assert_close(out, reference_t5(clean, ids, heads=4).float(), atol=2e-5, rtol=2e-5)


def test_bfloat16_compute_is_close():
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    ids = _ids()
    fp32 = load_fp32(sd, mode="cpu").encode(ids)
    bf16 = load_fp32(sd, mode="cpu", compute_dtype=torch.bfloat16).encode(ids)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()


def test_prefixed_and_embed_tokens_only_files_load():
    sd = t5_state_dict(**TINY, with_embed_tokens=True)
    ids = _ids()
    expected = load_fp32(sd, mode="cpu").encode(ids)
    prefixed = {"text_encoders.t5xxl.transformer." + k: v for k, v in sd.items()}
    assert torch.equal(load_fp32(prefixed, mode="cpu").encode(ids), expected)
    alias_only = {k: v for k, v in sd.items() if k != "shared.weight"}
    assert torch.equal(load_fp32(alias_only, mode="cpu").encode(ids), expected)


def test_original_t5_relu_layout_matches_transformers():
    sd = t5_state_dict(**TINY, gated=False)
    encoder = load_fp32(sd, mode="cpu")
    assert not encoder.config.is_gated_act
    ids = _ids()
    torch.testing.assert_close(encoder.encode(ids), hf_reference(sd, encoder.config, ids), atol=1e-5, rtol=1e-5)


def test_an_error_inside_a_sub_layer_leaves_no_upcast_copies():
    encoder = load_fp32(t5_state_dict(**TINY), mode="cpu")

    def boom(module, args):
        raise RuntimeError("stop")

    handle = encoder._model.encoder.block[1].layer[0].register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="stop"):
        encoder.encode(_ids())
    assert sum(p.numel() for p in encoder._model.parameters()) == 0
    handle.remove()
    assert encoder.encode(_ids()).shape == (2, 40, 32)


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.pop("encoder.block.1.layer.1.DenseReluDense.wo.weight"), "encoder.block.1.layer.1.DenseReluDense.wo"),
    (lambda sd: sd.pop("encoder.final_layer_norm.weight"), "encoder.final_layer_norm.weight"),
    (lambda sd: sd.pop("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
     "relative_attention_bias"),
    (lambda sd: sd.pop("shared.weight"), "shared.weight"),
    (lambda sd: sd.__setitem__("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight",
                               torch.zeros(32, 4)), "unexpected tensor 'encoder.block.1.layer.0"),
    (lambda sd: sd.__setitem__("encoder.block.1.layer.0.SelfAttention.k.weight", torch.zeros(32, 30)),
     "encoder.block.1.layer.0.SelfAttention.k.weight' has shape"),
    (lambda sd: sd.__setitem__("encoder.block.0.layer.0.layer_norm.weight", torch.zeros(32, dtype=torch.int8)),
     "encoder.block.0.layer.0.layer_norm.weight' has dtype"),
])
def test_layout_errors_name_the_file_and_tensor(mutate, message):
    sd = t5_state_dict(**TINY)
    mutate(sd)

    class Named(dict):
        path = "/models/t5xxl_fp8_e4m3fn.safetensors"

    with pytest.raises(ModelFileError) as info:
        load_fp32(Named(sd), mode="cpu")
    assert "/models/t5xxl_fp8_e4m3fn.safetensors" in str(info.value)
    assert message in str(info.value)


def test_parameter_errors_name_the_field():
    encoder = load_fp32(t5_state_dict(**TINY), mode="cpu")
    with pytest.raises(ParameterError, match="input_ids.*256"):
        encoder.encode(torch.tensor([[1, 256]]))
    with pytest.raises(ParameterError, match="input_ids"):
        encoder.encode(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ParameterError, match="t5_mode"):
        load_fp32(t5_state_dict(**TINY), mode="fast")


def test_auto_mode_choice(monkeypatch):
    cpu, cuda, meta = torch.device("cpu"), torch.device("cuda"), torch.device("meta")
    assert choose_mode("auto", cpu, 10) == "cpu"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: ((5 << 30) + ACTIVATION_RESERVE_BYTES, 0))
    assert choose_mode("auto", cuda, 5 << 30) == "gpu"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4 << 30, 0))
    assert choose_mode("auto", cuda, 5 << 30) == "stream"
    assert choose_mode("auto", meta, 10) == "gpu"
    assert choose_mode("stream", cpu, 10) == "stream"
    encoder = load_fp32(t5_state_dict(**TINY), mode="auto", device="cpu")
    assert encoder.mode == "cpu"


def test_identity_follows_the_file(tmp_path):
    from safetensors import safe_open

    path = save_safetensors(t5_state_dict(**TINY), tmp_path / "t5.safetensors")

    class FileView(dict):
        def __init__(self, path):
            with safe_open(path, framework="pt") as f:
                super().__init__({k: f.get_tensor(k) for k in f.keys()})
            self.path = path

    first = load_fp32(FileView(path), mode="cpu")
    again = load_fp32(FileView(path), mode="cpu")
    assert first.identity == again.identity and path in first.identity
    assert load_fp32(FileView(path), mode="cpu", compute_dtype=torch.bfloat16).identity != first.identity
    in_memory = load_fp32(t5_state_dict(**TINY), mode="cpu")
    assert in_memory.identity != load_fp32(t5_state_dict(**TINY), mode="cpu").identity


def test_dropping_the_encoder_frees_its_weights_without_a_gc_pass():
    import weakref

    encoder = load_fp32(t5_state_dict(**TINY, dtype=FP8_E4M3), mode="cpu")
    encoder.encode(_ids())
    weight = weakref.ref(encoder.stored_tensors()["encoder.block.1.layer.1.DenseReluDense.wo.weight"])
    gc.disable()
    try:
        del encoder
        assert weight() is None  # no reference cycle holds the storage
    finally:
        gc.enable()


def test_loads_and_encodes_inside_inference_mode():
    # Forge runs processing under torch.inference_mode(); loading may happen there too.
    sd = t5_state_dict(**TINY, dtype=FP8_E4M3)
    ids = _ids()
    expected = load_fp32(sd, mode="cpu").encode(ids)
    with torch.inference_mode():
        encoder = load_fp32(sd, mode="stream")
        assert torch.equal(encoder.encode(ids), expected)
    assert torch.equal(encoder.encode(ids), expected)

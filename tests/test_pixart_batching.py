"""PixArt-Sigma beyond the reference's forward: masked padding of captions (so captions of any lengths share one
batch), the ``eps`` entry point, loading in the file's dtype, and the optional ``torch.compile`` path."""

from __future__ import annotations

import logging

import pytest
import torch

from builders.pixart import pixart_state_dict
from tinybreaker_ext.models import pixart as pixart_module
from tinybreaker_ext.models.pixart import compile_pixart, load_pixart

TOLERANCE = 1e-5  # relative to the largest value of the separate result


@pytest.fixture(scope="module")
def model():
    return load_pixart(pixart_state_dict(hidden=144, depth=2, caption_dim=32, seed=3))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def captions(*lengths: int, seed: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, length, 32, generator=generator) for length in lengths]


def pad_with_mask(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pads [1, L_i, W] captions to the longest and returns (captions, mask), written out independently."""
    length = max(row.shape[1] for row in rows)
    padded = torch.zeros(len(rows), length, rows[0].shape[2])
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for index, row in enumerate(rows):
        padded[index, :row.shape[1]] = row[0]
        mask[index, :row.shape[1]] = True
    return padded, mask


@pytest.mark.parametrize("long_tokens", [77, 120, 300])
def test_padded_and_masked_captions_give_the_separate_results(model, long_tokens):
    short, long = captions(77, long_tokens)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 6, generator=generator).repeat(2, 1, 1, 1)
    timesteps = torch.tensor([600.0, 600.0])
    context, mask = pad_with_mask([short, long])
    together = model(x, timesteps, context, mask)
    for index, caption in enumerate((short, long)):
        alone = model(x[index:index + 1], timesteps[:1], caption)
        assert relative_error(together[index:index + 1], alone) <= TOLERANCE


def test_padding_without_the_mask_changes_the_result(model):
    """Guards the test above: the zero tokens matter unless they are masked (no bare zero-padding:
    docs/numerics.md "Caption length and masking")."""
    short, long = captions(77, 120)
    x = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(6)).repeat(2, 1, 1, 1)
    context, mask = pad_with_mask([short, long])
    unmasked = model(x, torch.tensor([600.0, 600.0]), context)
    alone = model(x[:1], torch.tensor([600.0]), short)
    assert relative_error(unmasked[:1], alone) > 100 * TOLERANCE


def test_a_mask_of_one_row_applies_to_the_whole_batch(model):
    (caption,) = captions(9)
    padded = torch.cat([caption, torch.zeros(1, 3, 32)], dim=1)
    mask = torch.arange(12)[None] < 9
    x = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    timesteps = torch.tensor([999.0, 400.0, 3.0])
    assert relative_error(model(x, timesteps, padded, mask), model(x, timesteps, caption)) <= TOLERANCE


def test_eps_returns_the_noise_channels_in_float32(model):
    (caption,) = captions(5)
    x = torch.randn(2, 4, 4, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    timesteps = torch.tensor([10.0, 700.0])
    eps = model.eps(x, timesteps, caption)
    assert eps.dtype == torch.float32 and eps.shape == (2, 4, 4, 6)
    assert torch.equal(eps, model(x.float(), timesteps, caption)[:, :4])
    context, mask = pad_with_mask([caption, torch.zeros(1, 2, 32)])
    assert torch.equal(model.eps(x, timesteps, context[:1], mask[:1]), model(x.float(), timesteps, context[:1],
                                                                              mask[:1])[:, :4])


def test_a_prepared_caption_gives_the_forward_s_own_result(model):
    """The caption's share of a forward, prepared once per sampling run, is what the forward computes itself: bit
    for bit, with a mask, and for a caption shared by every image of the batch."""
    short, long = captions(5, 9)
    context, mask = pad_with_mask([short, long])
    x = torch.randn(2, 4, 6, 4, generator=torch.Generator().manual_seed(11))
    timesteps = torch.tensor([900.0, 20.0])
    prepared = model.prepare_caption(context, mask)
    assert torch.equal(model(x, timesteps, prepared), model(x, timesteps, context, mask))
    assert torch.equal(model.eps(x, timesteps, prepared), model.eps(x, timesteps, context, mask))
    shared = model.prepare_caption(short)
    assert torch.equal(model(x, timesteps, shared), model(x, timesteps, short))


def test_a_16_bit_file_is_never_upcast_on_the_way_to_the_device(monkeypatch):
    """Each tensor travels in the file's dtype and is cast where it lands (a float32 copy on the host would double
    the bytes of a 16-bit file moving to a GPU). The meta device stands in for the GPU."""
    weights = pixart_state_dict(hidden=144, depth=1, caption_dim=32, dtype=torch.float16, seed=1)
    moves = []
    original_to = torch.Tensor.to

    def recording_to(tensor, *args, **kwargs):
        result = original_to(tensor, *args, **kwargs)
        moves.append((tensor.device.type, tensor.dtype, result.device.type, result.dtype))
        return result

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    model = load_pixart(weights, device="meta", dtype=torch.bfloat16)
    monkeypatch.undo()
    assert all(p.dtype == torch.bfloat16 and p.device.type == "meta" for p in model.parameters())
    assert ("cpu", torch.float16, "meta", torch.float16) in moves
    assert not any(dtype == torch.float32 for *_, dtype in moves)
    assert not any(source == "cpu" and dtype != torch.float16 for source, _, _, dtype in moves)


def test_load_keeps_float32_results_for_a_16_bit_file():
    weights = pixart_state_dict(hidden=144, depth=1, caption_dim=32, dtype=torch.float16, seed=2)
    model = load_pixart(weights, dtype=torch.float32)
    for name, parameter in model.state_dict().items():
        assert torch.equal(parameter, weights[name].float()), name


# ---- torch.compile (compiling on this CPU takes 30-100 s, so the wiring is tested with a stand-in compiler) ----

class RecordingCompile:
    """Stands in for ``torch.compile``: records what it compiles and runs it eagerly, counting calls."""

    def __init__(self, fail_probe: bool = False):
        self.compiled, self.calls, self.fail_probe = [], 0, fail_probe

    def __call__(self, function, **_options):
        self.compiled.append(function)
        if function is pixart_module._compile_probe and self.fail_probe:
            def broken(*args):
                raise RuntimeError("no working C++ compiler\nmore detail")
            return broken

        def run(*args, **kwargs):
            self.calls += 1
            return function(*args, **kwargs)

        return run


def test_compile_runs_every_block_through_the_compiled_function(monkeypatch):
    model = load_pixart(pixart_state_dict(hidden=144, depth=3, caption_dim=32, seed=3))
    (caption,) = captions(6)
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(9))
    eager = model(x, torch.tensor([500.0, 20.0]), caption)
    assert model.compiled_block is None  # off unless asked for
    fake = RecordingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    assert compile_pixart(model, device="cpu")
    assert fake.compiled == [pixart_module._compile_probe, pixart_module._run_block]
    calls_after_probe = fake.calls
    assert torch.equal(model(x, torch.tensor([500.0, 20.0]), caption), eager)
    assert fake.calls - calls_after_probe == 3  # one call per block


def test_compile_is_skipped_where_the_backend_fails(monkeypatch, caplog):
    model = load_pixart(pixart_state_dict(hidden=144, depth=1, caption_dim=32, seed=3))
    monkeypatch.setattr(torch, "compile", RecordingCompile(fail_probe=True))
    with caplog.at_level(logging.WARNING):
        assert not compile_pixart(model)
    assert model.compiled_block is None
    assert "no working C++ compiler" in caplog.text and "more detail" not in caplog.text


def test_compile_is_skipped_on_old_torch(monkeypatch, caplog):
    model = load_pixart(pixart_state_dict(hidden=144, depth=1, caption_dim=32, seed=3))
    fake = RecordingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    monkeypatch.setattr(torch, "__version__", "2.4.1+cu121")
    with caplog.at_level(logging.WARNING):
        assert not compile_pixart(model)
    assert fake.compiled == [] and model.compiled_block is None
    assert "2.5" in caplog.text


def test_the_pipeline_compiles_pixart_only_when_asked(monkeypatch, tiny_model_folder):
    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    fake = RecordingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    files = tiny_model_folder[1]
    plain = TinyBreakerPipeline(files["checkpoint1"], files["t5"], tokenizer_path=files["t5_tokenizer"])
    assert plain.pixart.compiled_block is None and fake.compiled == []
    compiled = TinyBreakerPipeline(files["checkpoint1"], files["t5"], tokenizer_path=files["t5_tokenizer"],
                                   compile=True)
    assert compiled.pixart.compiled_block is not None
    assert fake.compiled == [pixart_module._compile_probe, pixart_module._run_block]

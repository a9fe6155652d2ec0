"""PixArt-Sigma forward pass against formulas written out independently here (docs/numerics.md "PixArt-Sigma forward").

The reference uses numpy / python math for the sinusoids and explicit float64 matmuls + softmax for the
transformer, so it shares no code with ``tinybreaker_ext.models.pixart``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from builders.pixart import pixart_state_dict
from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.models.pixart import (PixArtConfig, load_pixart, pixart_position_embedding, timestep_sinusoid,
                                           unpatchify)

TOLERANCE = 1e-5  # relative to the largest reference value (at least 1)
HEAD_DIM = 72


def assert_close(actual: torch.Tensor, expected, tolerance: float = TOLERANCE):
    expected = torch.as_tensor(np.asarray(expected), dtype=torch.float64)
    actual = actual.detach().to(torch.float64)
    assert actual.shape == expected.shape
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tolerance * scale, f"max error {error:.3g} > {tolerance * scale:.3g}"


# ---- independent formulas ---------------------------------------------------------------------------------------

def reference_timestep_sinusoid(timesteps, dim=256):
    """docs/numerics.md "Timestep and position embeddings": float32 f_i = 1 / 10000^(i/128) (each step rounded
    once to float32), cos first."""
    f32 = np.float32
    half = dim // 2
    freqs = [f32(1.0 / float(f32(10000.0 ** (i / half)))) for i in range(half)]
    rows = []
    for t in timesteps:
        angles = [float(f32(float(f32(t)) * float(f))) for f in freqs]
        rows.append([math.cos(a) for a in angles] + [math.sin(a) for a in angles])
    return np.array(rows)


def reference_position_embedding(height, width, dim, base_size, pe_interpolation, grid_dtype=np.float32):
    """docs/numerics.md "Timestep and position embeddings": positions in float32 (j / (W/base) / interp), sin/cos
    in float64, [E(x), E(y)] row-major."""
    def axis(n):
        grid = np.arange(n, dtype=grid_dtype) / grid_dtype(n / base_size) / grid_dtype(pe_interpolation)
        return grid.astype(np.float64)

    quarter = dim // 4
    omega = np.array([1.0 / 10000 ** (k / quarter) for k in range(quarter)])

    def encode(p):
        return np.concatenate([np.sin(p * omega), np.cos(p * omega)])

    gx, gy = axis(width), axis(height)
    return np.array([np.concatenate([encode(gx[j]), encode(gy[i])]) for i in range(height) for j in range(width)])


def layer_norm(x):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6)


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + torch.exp(-x))


def linear(x, weights, name):
    return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]


def attention(q, k, v):
    """Explicit multi-head softmax attention, heads of 72 channels, scale 1/sqrt(72)."""
    outputs = []
    for h in range(q.shape[-1] // HEAD_DIM):
        cols = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
        scores = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(HEAD_DIM)
        weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
        outputs.append((weights / weights.sum(-1, keepdim=True)) @ v[..., cols])
    return torch.cat(outputs, dim=-1)


def reference_block(x, time6, caption, weights, n):
    dim = x.shape[-1]
    table = weights[f"blocks.{n}.scale_shift_table"][None] + time6
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (table[:, i, None, :] for i in range(6))
    qkv = linear(layer_norm(x) * (1 + scale_a) + shift_a, weights, f"blocks.{n}.attn.qkv")
    attn = attention(qkv[..., :dim], qkv[..., dim:2 * dim], qkv[..., 2 * dim:])
    x = x + gate_a * linear(attn, weights, f"blocks.{n}.attn.proj")
    q = linear(x, weights, f"blocks.{n}.cross_attn.q_linear")
    kv = linear(caption, weights, f"blocks.{n}.cross_attn.kv_linear")
    x = x + linear(attention(q, kv[..., :dim], kv[..., dim:]), weights, f"blocks.{n}.cross_attn.proj")
    hidden = gelu_tanh(linear(layer_norm(x) * (1 + scale_m) + shift_m, weights, f"blocks.{n}.mlp.fc1"))
    return x + gate_m * linear(hidden, weights, f"blocks.{n}.mlp.fc2")


def reference_final(x, temb, weights):
    table = weights["final_layer.scale_shift_table"][None] + temb[:, None, :]
    shift, scale = table[:, 0, None, :], table[:, 1, None, :]
    return linear(layer_norm(x) * (1 + scale) + shift, weights, "final_layer.linear")


def reference_unpatchify(tokens, height, width, patch, channels):
    """Unpatchify (docs/numerics.md "PixArt-Sigma forward") index by index: value (py·p+px)·C + c of token (r, col)
    goes to pixel (r·p+py, col·p+px)."""
    batch = tokens.shape[0]
    image = torch.zeros(batch, channels, height * patch, width * patch, dtype=tokens.dtype)
    for r in range(height):
        for col in range(width):
            for py in range(patch):
                for px in range(patch):
                    for c in range(channels):
                        value = tokens[:, r * width + col, (py * patch + px) * channels + c]
                        image[:, c, r * patch + py, col * patch + px] = value
    return image


def reference_forward(weights, x, timesteps, context, config):
    batch, channels, latent_h, latent_w = x.shape
    p, dim = config.patch_size, config.hidden_size
    height, width = latent_h // p, latent_w // p
    patches = x.reshape(batch, channels, height, p, width, p).permute(0, 2, 4, 1, 3, 5)  # (c, py, px) per patch
    patches = patches.reshape(batch, height * width, -1)
    tokens = patches @ weights["x_embedder.proj.weight"].reshape(dim, -1).T + weights["x_embedder.proj.bias"]
    tokens = tokens + torch.from_numpy(reference_position_embedding(height, width, dim, config.base_size,
                                                                    config.pe_interpolation))
    sinusoid = torch.from_numpy(reference_timestep_sinusoid(timesteps.tolist()))
    temb = linear(silu(linear(sinusoid, weights, "t_embedder.mlp.0")), weights, "t_embedder.mlp.2")
    time6 = linear(silu(temb), weights, "t_block.1").reshape(batch, 6, dim)
    caption = linear(gelu_tanh(linear(context, weights, "y_embedder.y_proj.fc1")), weights, "y_embedder.y_proj.fc2")
    for n in range(config.depth):
        tokens = reference_block(tokens, time6, caption, weights, n)
    out = reference_final(tokens, temb, weights)
    return reference_unpatchify(out, height, width, p, config.out_channels)


# ---- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights():
    return pixart_state_dict(hidden=144, depth=2, caption_dim=32, seed=3)


@pytest.fixture(scope="module")
def model(weights):
    return load_pixart(weights)


@pytest.fixture(scope="module")
def weights64(weights):
    return {key: value.to(torch.float64) for key, value in weights.items()}


def make_inputs(batch=2, latent_h=8, latent_w=12, caption_length=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, latent_h, latent_w, generator=generator)
    context = torch.randn(batch, caption_length, 32, generator=generator)
    timesteps = torch.tensor([999.0, 37.0, 500.0, 0.0][:batch])
    return x, timesteps, context


# ---- (a) sinusoids ----------------------------------------------------------------------------------------------

def test_timestep_sinusoid_uses_reciprocal_power_frequencies_with_cos_first():
    timesteps = [0.0, 1.0, 37.0, 500.0, 999.0]
    expected = reference_timestep_sinusoid(timesteps)
    assert_close(timestep_sinusoid(torch.tensor(timesteps)), expected)
    # the textbook exp(-ln(10000)·i/128) frequencies sit outside the tolerance, so the check above can tell them apart
    textbook = np.exp(-math.log(10000) * np.arange(128) / 128)
    angles = 999.0 * textbook.astype(np.float32).astype(np.float64)
    assert np.abs(np.cos(angles) - expected[4, :128]).max() > 3 * TOLERANCE


@pytest.mark.parametrize("height, width, resolution", [(3, 5, 1024), (64, 64, 1024), (7, 4, 512), (2, 9, 256)])
def test_position_embedding_matches_float32_grid_and_float64_sincos(height, width, resolution):
    config = PixArtConfig(hidden_size=144, resolution=resolution)
    expected = reference_position_embedding(height, width, 144, config.base_size, config.pe_interpolation)
    actual = pixart_position_embedding(height, width, 144, config.base_size, config.pe_interpolation)
    assert actual.dtype == torch.float64
    assert_close(actual, expected, tolerance=1e-12)


def test_position_grid_is_float32_before_sincos():
    """docs/numerics.md "Timestep and position embeddings": a float64 grid differs (by ~1e-6), and the
    implementation must follow the float32 one."""
    config = PixArtConfig(hidden_size=144)
    float64_grid = reference_position_embedding(3, 5, 144, config.base_size, config.pe_interpolation, np.float64)
    actual = pixart_position_embedding(3, 5, 144, config.base_size, config.pe_interpolation)
    assert (actual - torch.from_numpy(float64_grid)).abs().max() > 1e-8


def test_position_axes_span_the_training_grid_whatever_their_length():
    config = PixArtConfig()  # 1024 model: base 64, interpolation 2 -> positions in [0, 32)
    assert (config.base_size, config.pe_interpolation) == (64, 2.0)
    table = pixart_position_embedding(4, 6, 1152, config.base_size, config.pe_interpolation)
    # the first sin channel of each axis has ω_0 = 1, so it is sin(position)
    last_x, last_y = table[5, 0].item(), table[6 * 3, 576].item()
    assert last_x == pytest.approx(math.sin(5 * 32 / 6), abs=1e-6)
    assert last_y == pytest.approx(math.sin(3 * 32 / 4), abs=1e-6)


# ---- (b) one block, final layer, unpatchify ----------------------------------------------------------------------

@pytest.mark.parametrize("token_scale", [1.0, 1e-3])  # tiny tokens make LayerNorm's eps (1e-6) matter
def test_one_block_matches_hand_reference(model, weights64, token_scale):
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randn(2, 24, 144, generator=generator) * token_scale
    time6 = torch.randn(2, 6, 144, generator=generator)
    caption = torch.randn(2, 7, 144, generator=generator)
    expected = reference_block(tokens.double(), time6.double(), caption.double(), weights64, 1)
    block = model.blocks[1]
    assert_close(block(tokens, time6, *block.cross_attn.keys_values(caption)), expected)


def test_final_layer_and_unpatchify_match_hand_reference(model, weights64):
    generator = torch.Generator().manual_seed(6)
    tokens = torch.randn(2, 4 * 6, 144, generator=generator)
    temb = torch.randn(2, 144, generator=generator)
    expected_tokens = reference_final(tokens.double(), temb.double(), weights64)
    actual_tokens = model.final_layer(tokens, temb)
    assert_close(actual_tokens, expected_tokens)
    assert_close(unpatchify(actual_tokens, 4, 6, 2, 8), reference_unpatchify(expected_tokens, 4, 6, 2, 8))


# ---- (c) full forward --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("latent_h, latent_w, caption_length", [(8, 12, 5), (12, 8, 1), (4, 4, 13)])
def test_forward_matches_hand_reference(model, weights64, latent_h, latent_w, caption_length):
    x, timesteps, context = make_inputs(latent_h=latent_h, latent_w=latent_w, caption_length=caption_length)
    expected = reference_forward(weights64, x.double(), timesteps, context.double(), model.config)
    actual = model(x, timesteps, context)
    assert actual.shape == (2, 8, latent_h, latent_w) and actual.dtype == torch.float32
    assert_close(actual, expected)


def test_forward_is_deterministic(model):
    x, timesteps, context = make_inputs()
    assert torch.equal(model(x, timesteps, context), model(x, timesteps, context))


def test_every_linear_gets_row_major_tokens(model):
    """A transposed token view from the patch embedder would stay channel-major through every residual add, and the
    linears would then run as slower batched products."""
    seen = []
    handles = [module.register_forward_pre_hook(lambda _module, args, name=name: seen.append(
        (name, args[0].is_contiguous()))) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    try:
        with torch.no_grad():
            model(*make_inputs())
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) > 10 and [name for name, contiguous in seen if not contiguous] == []


def test_batch_items_are_independent_and_scalar_timestep_broadcasts(model):
    x, _, context = make_inputs()
    together = model(x, torch.tensor(250.0), context)
    alone = model(x[1:], torch.tensor([250.0]), context[1:])
    assert_close(together[1:], alone.double(), tolerance=1e-6)


def test_repeating_the_caption_leaves_the_output_unchanged(model):
    """Unmasked cross-attention: LCM repetition of a shorter caption is neutral
    (docs/numerics.md "Caption length and masking")."""
    x, timesteps, context = make_inputs(caption_length=3)
    repeated = context.repeat(1, 4, 1)
    assert_close(model(x, timesteps, repeated), model(x, timesteps, context).double(), tolerance=1e-6)


def test_adaln_tables_change_the_output(weights):
    """Guards the fixture: zeroing the modulation tables must matter, or the checks above would be weak."""
    x, timesteps, context = make_inputs()
    flat = dict(weights)
    flat.update({k: torch.zeros_like(v) for k, v in weights.items() if k.endswith("scale_shift_table")})
    difference = (load_pixart(flat)(x, timesteps, context) - load_pixart(weights)(x, timesteps, context)).abs().max()
    assert difference > 1e-2


def test_odd_latent_size_is_rejected(model):
    x, timesteps, context = make_inputs(latent_h=7)
    with pytest.raises(ParameterError, match="latent size"):
        model(x, timesteps, context)


def test_reduced_precision_load_tracks_float32(weights):
    x, timesteps, context = make_inputs()
    reference = load_pixart(weights)(x, timesteps, context)
    model = load_pixart(weights, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    output = model(x, timesteps, context)
    assert output.dtype == torch.float32
    assert (output - reference).abs().max() < 0.1 * reference.abs().max()

"""The inputs shared by `reference_values.py` (run against the reference) and test_sampling_reference.py (run against
our code): both sides must feed their functions the very same numbers, so they are defined once, here.

Plain torch only: this module is imported inside the reference's own environment too.
"""

from __future__ import annotations

import struct

import torch

# Model tables: PixArt-Sigma's (ComfyUI-TinyBreaker's PixArt config: "sqrt_linear" 1e-4..0.02, i.e. linear betas)
# and SD1's (ComfyUI's "linear" 0.00085..0.012, i.e. linearly spaced square roots of the betas).
TABLES = {
    "pixart": {"beta_schedule": "sqrt_linear", "linear_start": 0.0001, "linear_end": 0.02, "timesteps": 1000},
    "sd1": {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000},
}

SCHEDULERS = ("simple", "normal", "karras", "exponential", "sgm_uniform", "ddim_uniform", "beta",
              "linear_quadratic", "kl_optimal")
SCHEDULE_STEPS = tuple(range(1, 18)) + (20, 22, 24, 25, 30, 33, 40, 50, 64, 100)

SAMPLERS = ("euler", "euler_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "deis", "uni_pc", "uni_pc_bh2", "ddim")

# Sampler runs, by name: (table, scheduler, steps, steps_start, steps_end, batch, latent seed, noise seed); a latent
# seed of None is an empty latent. "txt2img" starts from pure noise; "base_window" from an empty latent noised to a
# sigma below the maximum, as the styles' base stages do (steps_start 2 or 3); the others from a noised latent
# partway down, as the refiner and the upscaler do.
SAMPLER_CASES = {
    "txt2img": ("pixart", "simple", 12, 0, 10000, 1, None, 1),
    "base_window": ("pixart", "beta", 16, 3, 10000, 1, None, 4),
    "refine": ("sd1", "normal", 22, 12, 10000, 1, 7, 2),
    "upscale_batch2": ("sd1", "karras", 16, 11, -1, 2, 11, 3),
}
LATENT_SHAPE = (4, 8, 8)

# Generic step windows run through the reference's calculate_sigmas: (steps, steps_start, steps_end, steps_nfactor).
WINDOWS = ((12, 0, 10000, 0), (12, 2, 10000, 0), (16, 11, -1, 0), (22, 12, 10000, -2), (11, 6, 10000, 3),
           (13, 10, 10000, 20), (14, 3, 9, 1), (5, 7, 10000, 0), (10, 0, 0, 0), (0, 0, 10000, 0),
           (12, 2, 10000, -10000), (16, 11, -1, 2))
WINDOW_SAMPLERS = ("euler", "uni_pc")  # one that keeps every sigma and one that drops the penultimate one
# Detail levels ("steps_nfactor") applied to each style's refiner window: ComfyUI-TinyBreaker's named levels
# (none -10000 … maximum +3) and two larger numbers a user may type.
REFINER_NFACTORS = (-10000, -2, -1, 0, 1, 2, 3, 9, 20)
STAGE_TABLES = {"base": "pixart", "refiner": "sd1", "upscaler": "sd1"}

CFG_SCALES = (1.0, 2.0, 3.4, 4.5, 7.0)
NOISE_CASES = {"single": ((1,) + LATENT_SHAPE, 1), "batch2": ((2,) + LATENT_SHAPE, 42), "odd": ((3, 4, 5, 7), 123)}
TIMESTEP_SIGMAS = (0.0100005, 0.0292, 0.03, 0.1, 0.5, 1.0, 1.5, 3.3, 14.6146, 20.0, 80.0, 157.4, 157.407, 200.0)
FRACTIONAL_TIMESTEPS = (0.0, 0.25, 1.5, 10.0, 499.5, 500.0, 998.75, 999.0)


def latent(batch: int, seed) -> torch.Tensor:
    """The clean latent of a run: zeros (an empty latent) or a seeded normal draw scaled to a VAE latent's size."""
    if seed is None:
        return torch.zeros((batch,) + LATENT_SHAPE)
    generator = torch.Generator().manual_seed(seed)
    return 0.8 * torch.randn((batch,) + LATENT_SHAPE, generator=generator)


def small_latent(seed: int) -> torch.Tensor:
    """A [2, 4, 4, 4] seeded latent for the one-call checks (CFG, eps wrapper): small keeps the fixture small."""
    return latent(2, seed)[:, :, :4, :4].contiguous()


def analytic_denoised(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A fixed smooth stand-in for a model's denoised output: x0 = tanh(0.3·x) + 0.01·σ (σ per batch item)."""
    return torch.tanh(0.3 * x) + 0.01 * sigma.reshape(sigma.shape[:1] + (1,) * (x.ndim - 1))


def conditioned_denoised(x: torch.Tensor, sigma: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """The stand-in under a condition of the given strength ([B]): cond and uncond differ only by it."""
    return strength.reshape(strength.shape[:1] + (1,) * (x.ndim - 1)) * torch.tanh(0.3 * x) + 0.01 * sigma.reshape(
        sigma.shape[:1] + (1,) * (x.ndim - 1))


COND_STRENGTH, UNCOND_STRENGTH = 1.0, 0.9


def analytic_eps(x_in: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for an eps-prediction network, fed the scaled input and the integer timestep."""
    return 0.5 * torch.tanh(x_in) + 1e-4 * timestep.reshape(timestep.shape[:1] + (1,) * (x_in.ndim - 1))


# --- T5 prompts: ComfyUI's weighting on a stand-in vocabulary and a tiny random T5 ------------------------------

T5_PAD, T5_EOS = 0, 1
T5_MIN_LENGTHS = {"sd3": 77, "pixart": 1}  # ComfyUI's SD3 T5 tokenizer; ComfyUI-TinyBreaker's "pixart" one
TINY_T5 = dict(d_model=32, num_layers=2, num_heads=4, d_kv=8, d_ff=64, vocab_size=256, seed=3)
T5_PROMPTS = ("a red cat", "", "(dog:1.2) on a (table:0.8)", "a ((red)) cat, [x]", "escaped \\(paren\\) text",
              "unbalanced (paren here", "embedding:foo bar, baz", "  spaced   words ", "multi\nline embedding:x y",
              "(a:1.5) b (c:1.5)", "(x:abc) y", "(plain) (w:1)", " ".join(f"word{i}" for i in range(90)))
T5_ENCODED_PROMPTS = ("", "(dog:1.2) on a (table:0.8)", "a ((red)) cat, [x]")  # embeddings pinned for these


def stand_in_token_ids(text: str) -> list[int]:
    """A stand-in for T5's SentencePiece vocabulary (no real one can be shipped): one id marking a tokenised piece of
    text and its length, then one id per character, all within the tiny T5's 256 and clear of <pad>/</s>. Empty
    text has no pieces, as with SentencePiece (the reference reads its end token from the tokenisation of "")."""
    if not text:
        return []
    return [3 + min(len(text), 40)] + [50 + ord(character) % 200 for character in text]


# --- Tiny Upscaler tile sweeps: (canvas height, width, tile size); overlap and margin are tile size // 8 ----------

TILE_CASES = ((16, 16, 16), (30, 44, 16), (37, 64, 16), (64, 50, 16), (50, 70, 24), (128, 200, 128))


# --- float32-exact encoding ---------------------------------------------------------------------------------------

def encode(tensor) -> dict:
    """A float32 tensor as its shape and the big-endian hex of its bits (8 hex digits a value, NaN-safe)."""
    tensor = torch.as_tensor(tensor).detach().cpu().to(torch.float32).contiguous()
    values = tensor.reshape(-1).tolist()
    return {"shape": list(tensor.shape), "hex": struct.pack(f">{len(values)}f", *values).hex()}


def decode(entry: dict) -> torch.Tensor:
    raw = bytes.fromhex(entry["hex"])
    values = struct.unpack(f">{len(raw) // 4}f", raw)
    return torch.tensor(values, dtype=torch.float32).reshape(entry["shape"])

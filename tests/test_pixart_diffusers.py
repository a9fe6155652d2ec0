"""Cross-check against diffusers' PixArtTransformer2DModel where it is installed (it is absent on A1111).

This validates the diffusers key names of the builder and the conversion table of
docs/model-files.md "PixArt-Sigma layouts" against the real library, and documents why the project keeps its own
module: the two agree exactly in structure, and differ only in the timestep frequencies
(docs/numerics.md "Timestep and position embeddings").
"""

from __future__ import annotations

import pytest
import torch

from builders.pixart import pixart_state_dict
from tinybreaker_ext.models.pixart import load_pixart, timestep_sinusoid

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def both_models():
    from diffusers import PixArtTransformer2DModel

    theirs = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=144, sample_size=128, patch_size=2, caption_channels=32, interpolation_scale=2,
        use_additional_conditions=False,
    ).eval()
    theirs.load_state_dict(pixart_state_dict(layout="diffusers", seed=7), strict=True)
    return load_pixart(pixart_state_dict(seed=7)), theirs


def run_diffusers(model, x, timesteps, context):
    with torch.no_grad():
        return model(x, encoder_hidden_states=context, timestep=timesteps,
                     added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]


def test_matches_diffusers_where_the_timestep_sinusoids_agree(both_models):
    ours, theirs = both_models
    generator = torch.Generator().manual_seed(2)
    x, context = torch.randn(2, 4, 8, 12, generator=generator), torch.randn(2, 6, 32, generator=generator)
    timesteps = torch.zeros(2)  # cos(0)=1, sin(0)=0 whatever the frequencies
    expected = run_diffusers(theirs, x, timesteps, context)
    assert (ours(x, timesteps, context) - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_diffusers_timestep_frequencies_differ_from_the_reference():
    from diffusers.models.embeddings import get_timestep_embedding

    timesteps = torch.tensor([999.0])
    theirs = get_timestep_embedding(timesteps, 256, flip_sin_to_cos=True, downscale_freq_shift=0)
    difference = (timestep_sinusoid(timesteps) - theirs).abs().max().item()
    assert 1e-5 < difference < 1e-3

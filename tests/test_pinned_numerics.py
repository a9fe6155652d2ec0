"""Pinned output slices (like diffusers' ``expected_slice``): the base stage for every base sampler × schedule and
one embedded refine, on the tiny TinyBreaker file, so any change in numerics shows at once.

The values are this code's own outputs when they were pinned (not the reference's: test_sampling_* compare the
samplers and schedules with the reference). After an intended change of numerics, print the new values with
``python tests/test_pinned_numerics.py`` from the repository root and replace PINNED below.
"""

from __future__ import annotations

import itertools
import os
import sys

import pytest
import torch

if __package__ in (None, ""):
    sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    os.path.dirname(os.path.abspath(__file__))]

from tinybreaker_ext.params import BASE_SAMPLERS, BASE_SCHEDULERS, FROM_STYLE  # noqa: E402
from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas  # noqa: E402
from tinybreaker_ext.stage_params import StageParams  # noqa: E402

SAMPLERS = [name for name in BASE_SAMPLERS if name != FROM_STYLE]
SCHEDULERS = [name for name in BASE_SCHEDULERS if name != FROM_STYLE]
WIDTH, HEIGHT, SEED = 32, 32, 3
RELATIVE = 1e-4  # float32 on another CPU may round differently; a change of formula moves these by far more


def contexts(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed cond/uncond text contexts: the tokenizers the tests train differ between library versions, and the
    text encoders have tests of their own, so the pins cover the denoisers, samplers and schedules alone."""
    generator = torch.Generator().manual_seed(123)
    return torch.randn(1, 77, width, generator=generator), torch.randn(1, 77, width, generator=generator)


def base_slice(pipeline, sampler: str, scheduler: str) -> list[float]:
    from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser
    from tinybreaker_ext.sampling.stage import sample_stage

    sigmas = compute_sigmas(pixart_sigmas(), sampler=sampler, scheduler=scheduler, steps=6, steps_start=1)
    cond, uncond = contexts(pipeline.pixart.config.caption_dim)
    denoiser = CFGDenoiser(EpsDenoiser(pipeline.pixart.eps, pixart_sigmas()), cond, uncond, 3.4)
    latent = sample_stage(denoiser, torch.zeros(1, 4, HEIGHT // 8, WIDTH // 8), sigmas, sampler=sampler, seeds=[SEED],
                          sigma_max=pixart_sigmas()[-1])
    return [round(float(value), 6) for value in latent.flatten()[:: max(latent.numel() // 6, 1)][:6]]


def refine_slice(refiner, base_latent) -> list[float]:
    from tinybreaker_ext.sampling.schedules import sd1_sigmas

    stage = StageParams(sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=7, cfg=2.5)
    sigmas = compute_sigmas(sd1_sigmas(), sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=7)
    cond, uncond = contexts(refiner.unet.unet.config.cross_attention_dim)
    refiner.encode = lambda text, placement: cond if text == "cond" else uncond
    latent = refiner.refine(base_latent, ["cond"], ["uncond"], stage, sigmas, seeds=[1])
    return [round(float(value), 6) for value in latent.flatten()[:6]]


def make_pipeline(paths):
    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    return TinyBreakerPipeline(paths["checkpoint1"], paths["t5"], tokenizer_path=paths["t5_tokenizer"])


PINNED_BASE: dict[tuple[str, str], list[float]] = {
    ('euler', 'simple'): [10.702668, 37.493568, 25.578711, 107.433296, -25.66111, -23.516418],
    ('euler', 'normal'): [-1.285293, 25.991884, 47.301155, 91.367508, -40.04652, -23.504597],
    ('euler', 'karras'): [5.805836, 100.173935, 125.660606, 223.769012, -25.05409, -8.774017],
    ('euler', 'exponential'): [-1.568904, 42.844784, 57.902885, 99.93187, -18.881519, -14.066398],
    ('euler', 'sgm_uniform'): [22.888203, 48.829948, 20.487043, 106.214417, -31.606655, -22.058434],
    ('euler', 'ddim_uniform'): [-4.811869, 6.647732, 12.727419, 30.107895, -9.374741, -6.881411],
    ('euler', 'beta'): [-45.405453, 54.55621, 119.147881, 257.142639, -73.820351, -30.213409],
    ('euler', 'linear_quadratic'): [-166.136963, 155.639084, 213.996582, 498.575867, -76.208488, -122.591965],
    ('euler', 'kl_optimal'): [-0.907496, 4.621254, 5.870259, 11.569558, -0.864988, -3.717789],
    ('euler_ancestral', 'simple'): [12.774009, 43.730526, 40.009205, 131.721039, -37.211002, -28.767708],
    ('euler_ancestral', 'normal'): [-1.267493, 30.490871, 63.019726, 110.54158, -51.596035, -28.488579],
    ('euler_ancestral', 'karras'): [6.627702, 121.702591, 161.099762, 276.818848, -32.628941, -5.216334],
    ('euler_ancestral', 'exponential'): [-1.846952, 48.556583, 67.106667, 113.576797, -21.829506, -15.729913],
    ('euler_ancestral', 'sgm_uniform'): [28.617043, 58.086887, 33.219173, 130.306168, -44.697655, -26.460152],
    ('euler_ancestral', 'ddim_uniform'): [-5.74301, 7.902061, 19.835773, 38.440273, -14.421617, -9.353172],
    ('euler_ancestral', 'beta'): [-54.639507, 62.453972, 153.012299, 308.737427, -93.14373, -35.675175],
    ('euler_ancestral', 'linear_quadratic'): [121.111389, 51.735672, 423.367828, 589.224243, -132.129395, -209.098236],
    ('euler_ancestral', 'kl_optimal'): [-1.35513, 5.63334, 9.456867, 14.941428, -1.217898, -5.240356],
    ('lms', 'simple'): [10.373902, 35.94595, 25.477716, 105.991524, -26.497091, -25.332455],
    ('lms', 'normal'): [-0.962099, 25.388258, 46.780804, 90.903519, -40.219025, -24.208956],
    ('lms', 'karras'): [8.148967, 97.8228, 122.560463, 220.666351, -26.487186, -12.596282],
    ('lms', 'exponential'): [-1.441876, 42.391384, 57.541389, 99.483582, -19.12298, -14.301294],
    ('lms', 'sgm_uniform'): [22.062551, 46.791779, 20.429052, 104.767265, -32.289787, -23.956619],
    ('lms', 'ddim_uniform'): [-4.55417, 6.413616, 12.456758, 29.924555, -9.340718, -7.391417],
    ('lms', 'beta'): [-44.341724, 53.706459, 118.394073, 255.664566, -74.357635, -31.449448],
    ('lms', 'linear_quadratic'): [8596.988281, 9787.148438, 11728.057617, -5034.226562, 7240.013184, 11890.004883],
    ('lms', 'kl_optimal'): [-0.801444, 4.287198, 5.726181, 11.383682, -1.047651, -4.069157],
    ('dpmpp_2m', 'simple'): [9.270637, 30.956079, 24.745777, 100.992867, -29.12594, -31.133965],
    ('dpmpp_2m', 'normal'): [1.576166, 22.090893, 43.802635, 87.802963, -41.438416, -28.019653],
    ('dpmpp_2m', 'karras'): [26.57461, 79.151123, 98.100746, 196.133545, -37.773247, -42.705753],
    ('dpmpp_2m', 'exponential'): [0.039185, 37.916183, 53.890854, 94.94207, -21.555714, -16.740917],
    ('dpmpp_2m', 'sgm_uniform'): [19.219973, 40.174755, 19.899111, 99.757149, -34.34845, -30.071146],
    ('dpmpp_2m', 'ddim_uniform'): [-3.011758, 4.743548, 11.328112, 29.118267, -9.504206, -10.33451],
    ('dpmpp_2m', 'beta'): [-38.729446, 50.257736, 114.84877, 248.911972, -77.009163, -37.407406],
    ('dpmpp_2m', 'linear_quadratic'): [-84.149002, 118.977737, 154.728928, 615.554443, -201.923004, -444.921936],
    ('dpmpp_2m', 'kl_optimal'): [-0.366836, 3.318928, 5.378622, 10.978715, -1.963449, -5.607733],
    ('dpmpp_2m_sde', 'simple'): [12.147873, 33.672897, 10.124653, 113.951195, -18.835842, -22.252462],
    ('dpmpp_2m_sde', 'normal'): [3.865603, 26.046736, 44.429478, 102.976898, -42.424576, -28.684328],
    ('dpmpp_2m_sde', 'karras'): [25.991362, 119.007462, 107.686119, 249.925629, -13.092308, -7.62247],
    ('dpmpp_2m_sde', 'exponential'): [-1.405764, 44.881344, 57.808838, 107.593796, -16.544136, -12.352345],
    ('dpmpp_2m_sde', 'sgm_uniform'): [24.449858, 46.34156, 3.164035, 111.55204, -26.004276, -21.394836],
    ('dpmpp_2m_sde', 'ddim_uniform'): [-3.683457, 5.644052, 7.211783, 36.76236, -7.944363, -10.150144],
    ('dpmpp_2m_sde', 'beta'): [-57.54504, 62.022327, 111.653656, 292.55542, -66.418304, -5.271182],
    ('dpmpp_2m_sde', 'linear_quadratic'): [-258.08075, 263.422638, -101.483879, 772.466797, -417.266876, -177.249756],
    ('dpmpp_2m_sde', 'kl_optimal'): [2.336021, 6.035607, 6.985744, 13.275647, 1.068346, -5.051538],
    ('deis', 'simple'): [9.865858, 33.891529, 25.386642, 103.929283, -27.55612, -27.847343],
    ('deis', 'normal'): [-0.281096, 24.493824, 45.998817, 89.960266, -40.550179, -25.245258],
    ('deis', 'karras'): [11.612215, 93.075768, 116.852043, 214.589478, -30.72646, -18.594769],
    ('deis', 'exponential'): [-0.627397, 40.322197, 55.813675, 97.327667, -20.285173, -15.491421],
    ('deis', 'sgm_uniform'): [20.886036, 44.092403, 20.393255, 102.749672, -33.04303, -26.540693],
    ('deis', 'ddim_uniform'): [-4.310721, 6.129945, 12.418644, 29.791931, -9.428065, -7.626256],
    ('deis', 'beta'): [-41.779755, 51.045048, 116.200256, 251.182449, -75.719986, -34.849567],
    ('deis', 'linear_quadratic'): [402.760284, 288.7258, -350.052612, -213.195602, -162.039078, 814.321838],
    ('deis', 'kl_optimal'): [-0.791814, 4.181191, 5.722876, 11.386542, -1.150547, -4.17888],
    ('uni_pc', 'simple'): [10.481092, 42.01516, 68.829773, 131.305954, -18.83741, -25.056705],
    ('uni_pc', 'normal'): [14.721517, 30.658581, 19.623499, 92.496101, -36.857948, -38.882717],
    ('uni_pc', 'karras'): [22.733734, 26.450588, 75.241203, 185.910721, -76.280037, -109.616096],
    ('uni_pc', 'exponential'): [1.842116, 13.794839, 31.869617, 100.344521, -39.889828, -24.849495],
    ('uni_pc', 'sgm_uniform'): [8.211882, 42.486488, 65.294807, 125.938759, -23.392256, -21.460196],
    ('uni_pc', 'ddim_uniform'): [2.701875, 10.455908, 19.337719, 44.024651, -10.260169, -10.446194],
    ('uni_pc', 'beta'): [-15.293736, 87.570229, 135.87561, 306.148987, -101.645035, -110.695435],
    ('uni_pc', 'linear_quadratic'): [-76.198067, 184.468475, 168.777527, 594.385864, -52.484135, -61.338173],
    ('uni_pc', 'kl_optimal'): [0.121853, 3.911552, 6.595898, 15.125977, -2.093386, -5.353952],
    ('ddim', 'simple'): [10.702668, 37.493568, 25.578711, 107.433296, -25.66111, -23.516418],
    ('ddim', 'normal'): [-1.285293, 25.991884, 47.301155, 91.367508, -40.04652, -23.504597],
    ('ddim', 'karras'): [5.805836, 100.173935, 125.660606, 223.769012, -25.05409, -8.774017],
    ('ddim', 'exponential'): [-1.568904, 42.844784, 57.902885, 99.93187, -18.881519, -14.066398],
    ('ddim', 'sgm_uniform'): [22.888203, 48.829948, 20.487043, 106.214417, -31.606655, -22.058434],
    ('ddim', 'ddim_uniform'): [-4.811869, 6.647732, 12.727419, 30.107895, -9.374741, -6.881411],
    ('ddim', 'beta'): [-45.405453, 54.55621, 119.147881, 257.142639, -73.820351, -30.213409],
    ('ddim', 'linear_quadratic'): [-166.136963, 155.639084, 213.996582, 498.575867, -76.208488, -122.591965],
    ('ddim', 'kl_optimal'): [-0.907496, 4.621254, 5.870259, 11.569558, -0.864988, -3.717789],
}
PINNED_REFINE: list[float] = [-2.324148, -1.710608, -0.737903, -1.729747, 0.79928, -0.045879]


@pytest.fixture(scope="module")
def pipeline(tiny_model_folder):
    return make_pipeline(tiny_model_folder[1])


@pytest.mark.parametrize("sampler, scheduler", list(itertools.product(SAMPLERS, SCHEDULERS)))
def test_base_stage_output_is_pinned(pipeline, sampler, scheduler):
    assert (sampler, scheduler) in PINNED_BASE, "a new sampler or schedule: pin its values (see the docstring)"
    assert base_slice(pipeline, sampler, scheduler) == pytest.approx(PINNED_BASE[sampler, scheduler],
                                                                     rel=RELATIVE, abs=1e-5)


def test_embedded_refine_output_is_pinned(pipeline, tiny_model_folder):
    pytest.importorskip("diffusers")
    from tinybreaker_ext.standalone import EmbeddedRefiner

    paths = tiny_model_folder[1]
    refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=paths["clip_tokenizer"],
                              tokenizer_search={"allow_download": False})
    start = torch.randn(1, 4, HEIGHT // 8, WIDTH // 8, generator=torch.Generator().manual_seed(0))
    assert refine_slice(refiner, start) == pytest.approx(PINNED_REFINE, rel=RELATIVE, abs=1e-5)


if __name__ == "__main__":  # print the current values in PINNED's format
    import tempfile

    from builders.tinybreaker_files import write_tiny_model_folder

    from tinybreaker_ext.standalone import EmbeddedRefiner

    paths = write_tiny_model_folder(tempfile.mkdtemp(), prototypes=(1,))
    current = make_pipeline(paths)
    print("PINNED_BASE = {")
    for sampler, scheduler in itertools.product(SAMPLERS, SCHEDULERS):
        print(f"    ({sampler!r}, {scheduler!r}): {base_slice(current, sampler, scheduler)},")
    print("}")
    embedded = EmbeddedRefiner(current, clip_tokenizer_path=paths["clip_tokenizer"],
                               tokenizer_search={"allow_download": False})
    start = torch.randn(1, 4, HEIGHT // 8, WIDTH // 8, generator=torch.Generator().manual_seed(0))
    print(f"PINNED_REFINE = {refine_slice(embedded, start)}")

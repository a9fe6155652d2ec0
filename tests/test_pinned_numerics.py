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


def base_slice(pipeline, sampler: str, scheduler: str) -> list[float]:
    stage = StageParams(sampler=sampler, scheduler=scheduler, steps=6, steps_start=1, cfg=3.4)
    sigmas = compute_sigmas(pixart_sigmas(), sampler=sampler, scheduler=scheduler, steps=6, steps_start=1)
    pipeline._base_cache = None
    latent = pipeline.base(["a red cube, (studio light:1.2)"], ["blurry"], stage, sigmas, width=WIDTH,
                           height=HEIGHT, seeds=[SEED])
    return [round(float(value), 6) for value in latent.flatten()[:: max(latent.numel() // 6, 1)][:6]]


def refine_slice(refiner, base_latent) -> list[float]:
    stage = StageParams(sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=7, cfg=2.5)
    from tinybreaker_ext.sampling.schedules import sd1_sigmas

    sigmas = compute_sigmas(sd1_sigmas(), sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=7)
    latent = refiner.refine(base_latent, ["a red cube"], ["(worst quality:1.8)"], stage, sigmas, seeds=[1])
    return [round(float(value), 6) for value in latent.flatten()[:6]]


def make_pipeline(paths):
    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    return TinyBreakerPipeline(paths["checkpoint1"], paths["t5"], tokenizer_path=paths["t5_tokenizer"])


PINNED_BASE: dict[tuple[str, str], list[float]] = {
    ('euler', 'simple'): [78.756416, 87.572189, 49.68679, 104.138321, -55.523556, -56.9352],
    ('euler', 'normal'): [32.208504, 65.391838, 51.51524, 78.129341, -63.126854, -65.05896],
    ('euler', 'karras'): [59.329674, 138.197647, 131.013382, 205.470932, -30.984636, -26.066908],
    ('euler', 'exponential'): [37.657257, 70.421883, 78.931847, 101.7948, -42.817421, -48.809895],
    ('euler', 'sgm_uniform'): [85.069275, 91.973694, 48.331196, 102.927284, -57.654263, -51.982292],
    ('euler', 'ddim_uniform'): [13.665096, 21.243887, 10.540984, 23.640207, -17.271019, -11.146885],
    ('euler', 'beta'): [67.974236, 132.616821, 121.542923, 227.471176, -109.209785, -92.29248],
    ('euler', 'linear_quadratic'): [139.990753, 337.79126, 143.384735, 389.160126, -256.464539, -210.459869],
    ('euler', 'kl_optimal'): [5.470316, 8.764157, 4.150314, 8.752715, -4.470743, -4.765406],
    ('euler_ancestral', 'simple'): [98.370506, 106.495003, 72.042915, 128.527802, -75.065979, -71.70594],
    ('euler_ancestral', 'normal'): [38.922245, 78.682655, 69.399246, 94.98439, -79.886917, -80.117493],
    ('euler_ancestral', 'karras'): [71.102783, 168.191147, 172.873596, 256.462311, -40.874069, -32.868759],
    ('euler_ancestral', 'exponential'): [42.938202, 79.95639, 91.535881, 116.201027, -49.376255, -55.674397],
    ('euler_ancestral', 'sgm_uniform'): [106.501236, 112.199928, 70.330971, 126.840446, -77.811058, -65.50824],
    ('euler_ancestral', 'ddim_uniform'): [16.816956, 26.038979, 17.82729, 30.368654, -23.482529, -14.50189],
    ('euler_ancestral', 'beta'): [79.502197, 155.958511, 156.8647, 273.522095, -134.634705, -110.500389],
    ('euler_ancestral', 'linear_quadratic'): [367.03891, 331.095703, 303.228119, 404.847992, -250.936035, -246.792877],
    ('euler_ancestral', 'kl_optimal'): [6.849695, 11.274393, 6.768994, 11.18451, -6.041824, -6.045917],
    ('lms', 'simple'): [76.414505, 84.763382, 48.169376, 102.216492, -55.261284, -55.93261],
    ('lms', 'normal'): [31.59532, 64.145752, 50.821812, 77.503998, -62.424843, -63.851578],
    ('lms', 'karras'): [59.478516, 134.623978, 125.197906, 200.696732, -30.978897, -24.635014],
    ('lms', 'exponential'): [37.291702, 69.789871, 78.113235, 101.021858, -42.604408, -48.180458],
    ('lms', 'sgm_uniform'): [82.340836, 88.935196, 46.837231, 101.032127, -57.165054, -51.224586],
    ('lms', 'ddim_uniform'): [13.292595, 20.531527, 10.154647, 23.32531, -16.587046, -10.978761],
    ('lms', 'beta'): [66.228813, 129.608902, 120.054321, 225.552399, -107.762108, -90.030479],
    ('lms', 'linear_quadratic'): [1253.411987, 14807.316406, 3960.518799, -10948.099609, 5603.450684, 14175.165039],
    ('lms', 'kl_optimal'): [5.411647, 8.398876, 3.701583, 8.509342, -4.51328, -4.841724],
    ('dpmpp_2m', 'simple'): [68.626862, 75.378311, 42.338364, 95.231606, -53.790344, -52.475693],
    ('dpmpp_2m', 'normal'): [28.638706, 56.924896, 46.625595, 73.427765, -58.573524, -56.139973],
    ('dpmpp_2m', 'karras'): [60.665657, 106.478584, 79.353638, 163.027573, -30.434103, -13.330009],
    ('dpmpp_2m', 'exponential'): [33.679955, 63.46851, 69.772995, 93.1063, -40.408798, -41.788979],
    ('dpmpp_2m', 'sgm_uniform'): [73.239807, 78.83004, 41.052933, 94.174332, -55.078392, -48.597984],
    ('dpmpp_2m', 'ddim_uniform'): [11.516474, 16.551027, 8.667624, 21.942175, -13.572991, -10.545065],
    ('dpmpp_2m', 'beta'): [57.38974, 114.221107, 112.609108, 216.061523, -100.133583, -77.928337],
    ('dpmpp_2m', 'linear_quadratic'): [247.148956, 330.158539, 49.820606, 398.200562, -384.621796, -521.041504],
    ('dpmpp_2m', 'kl_optimal'): [4.609223, 6.733584, 2.454702, 7.721476, -4.602777, -4.651538],
    ('dpmpp_2m_sde', 'simple'): [90.0401, 96.042953, 35.740021, 105.874626, -51.97541, -52.655087],
    ('dpmpp_2m_sde', 'normal'): [39.331692, 74.174774, 49.591106, 83.535004, -63.419788, -63.130424],
    ('dpmpp_2m_sde', 'karras'): [87.806602, 162.371613, 91.377098, 211.096985, -9.963227, 13.833439],
    ('dpmpp_2m_sde', 'exponential'): [41.04454, 77.43792, 78.52639, 106.616318, -40.620487, -44.829979],
    ('dpmpp_2m_sde', 'sgm_uniform'): [96.308159, 101.012772, 33.956272, 104.349052, -54.077827, -48.02346],
    ('dpmpp_2m_sde', 'ddim_uniform'): [16.820276, 21.125597, 4.615933, 23.402916, -9.89199, -7.360612],
    ('dpmpp_2m_sde', 'beta'): [68.072586, 144.928131, 109.759415, 249.870468, -96.063499, -72.836517],
    ('dpmpp_2m_sde', 'linear_quadratic'): [357.868896, 440.205078, -299.568207, 340.157806, -328.102936, -213.374161],
    ('dpmpp_2m_sde', 'kl_optimal'): [11.103755, 11.087303, 1.229157, 6.695152, -2.1136, -3.52588],
    ('deis', 'simple'): [72.974945, 80.815437, 46.299873, 99.632858, -54.490681, -54.532555],
    ('deis', 'normal'): [30.777937, 62.148403, 49.616917, 76.311386, -61.353512, -61.707623],
    ('deis', 'karras'): [58.863731, 127.676407, 117.003815, 193.626297, -31.235916, -24.306162],
    ('deis', 'exponential'): [35.615509, 66.818794, 74.106445, 97.198654, -41.538471, -45.126747],
    ('deis', 'sgm_uniform'): [78.423813, 84.704712, 45.064541, 98.56282, -56.132004, -50.188171],
    ('deis', 'ddim_uniform'): [13.035383, 19.916975, 10.03204, 23.152103, -16.13418, -10.903536],
    ('deis', 'beta'): [61.648975, 122.060509, 116.49427, 220.482849, -104.430061, -85.32653],
    ('deis', 'linear_quadratic'): [669.314087, 511.619171, -834.582581, -873.957642, -801.611511, 286.75238],
    ('deis', 'kl_optimal'): [5.285063, 8.222542, 3.655295, 8.485849, -4.505818, -4.782459],
    ('uni_pc', 'simple'): [50.510155, 85.684547, 53.204922, 102.125885, -31.649155, -12.548661],
    ('uni_pc', 'normal'): [59.698593, 63.989601, 33.159592, 84.377518, -50.652267, -44.67841],
    ('uni_pc', 'karras'): [52.225525, 62.994232, 61.000301, 137.344391, -47.268414, -48.839699],
    ('uni_pc', 'exponential'): [26.721174, 35.198128, 53.143242, 87.385727, -53.100723, -21.199596],
    ('uni_pc', 'sgm_uniform'): [47.987331, 82.330788, 49.219872, 96.741585, -34.546913, -9.734513],
    ('uni_pc', 'ddim_uniform'): [17.060261, 24.904297, 13.151581, 36.202923, -10.996815, -6.361123],
    ('uni_pc', 'beta'): [75.010818, 129.847626, 121.6007, 261.995361, -106.776192, -112.277344],
    ('uni_pc', 'linear_quadratic'): [245.148087, 347.618103, 55.650249, 394.404968, -170.529831, -181.941544],
    ('uni_pc', 'kl_optimal'): [6.429974, 7.738497, 3.02847, 9.754827, -4.568898, -3.705492],
    ('ddim', 'simple'): [78.756416, 87.572189, 49.68679, 104.138321, -55.523556, -56.9352],
    ('ddim', 'normal'): [32.208504, 65.391838, 51.51524, 78.129341, -63.126854, -65.05896],
    ('ddim', 'karras'): [59.329674, 138.197647, 131.013382, 205.470932, -30.984636, -26.066908],
    ('ddim', 'exponential'): [37.657257, 70.421883, 78.931847, 101.7948, -42.817421, -48.809895],
    ('ddim', 'sgm_uniform'): [85.069275, 91.973694, 48.331196, 102.927284, -57.654263, -51.982292],
    ('ddim', 'ddim_uniform'): [13.665096, 21.243887, 10.540984, 23.640207, -17.271019, -11.146885],
    ('ddim', 'beta'): [67.974236, 132.616821, 121.542923, 227.471176, -109.209785, -92.29248],
    ('ddim', 'linear_quadratic'): [139.990753, 337.79126, 143.384735, 389.160126, -256.464539, -210.459869],
    ('ddim', 'kl_optimal'): [5.470316, 8.764157, 4.150314, 8.752715, -4.470743, -4.765406],
}
PINNED_REFINE: list[float] = [-2.342076, -1.719289, -0.737108, -1.727493, 0.729946, 0.062169]


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

"""Our numerics against numbers obtained by running the reference itself.

tests/fixtures/reference_values.json holds what tests/builders/reference_values.py got from the reference's own code
(ComfyUI at tag v0.3.55, which ComfyUI-TinyBreaker v0.3.1 runs on, and ComfyUI-TinyBreaker's calculate_sigmas, style
parser, template function, tile sweeps and T5 tokenizer settings) on the inputs of tests/builders/reference_inputs.py:
sigma tables, schedules, step windows, samplers, noise, CFG, the eps wrapper, style numbers, templates, tile sweeps,
T5 tokens and weighted T5 embeddings. Comparisons are bit for bit unless a stated, measured tolerance says otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from builders import reference_inputs as inputs
from builders.t5 import t5_state_dict
from tinybreaker_ext.models.t5_encoder import load_t5_encoder
from tinybreaker_ext.models.t5_tokenizer import T5PromptTokenizer
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.prompt.templates import apply_template
from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser
from tinybreaker_ext.sampling.noise import is_max_denoise, noised_start, stage_noise
from tinybreaker_ext.sampling.samplers import SAMPLERS
from tinybreaker_ext.sampling.schedules import (
    SCHEDULERS, DiscreteSchedule, compute_sigmas, pixart_sigmas, scheduler_sigmas, sd1_sigmas, timestep_of,
)
from tinybreaker_ext.text_encoding import encode_t5_prompt
from tinybreaker_ext.upscaler import TileGeometry, sweep_tiles

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "reference_values.json").read_text())
COMFYUI_V0_3_55 = "a86aaa430183068e2a264495c802c81d05eb350a"
TINYBREAKER_V0_3_1 = "f8abb67b8ea95fc3de944ce861fa94953f93291d"
OUR_TABLES = {"pixart": pixart_sigmas, "sd1": sd1_sigmas}


def reference(entry: dict) -> torch.Tensor:
    return inputs.decode(entry)


def assert_bit_exact(ours: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    ours = ours.detach().to(torch.float32)
    assert ours.shape == expected.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(expected.shape)}"
    if not torch.equal(ours, expected):
        difference = (ours.double() - expected.double()).abs()
        pytest.fail(f"{what}: not bit-exact, max abs difference {float(difference.max()):.3g} "
                    f"at {int(difference.argmax())} of {expected.numel()}")


def test_fixture_comes_from_the_pinned_reference():
    source = FIXTURE["source"]
    assert source["comfyui_commit"] == COMFYUI_V0_3_55 and source["comfyui_version"] == "0.3.55"
    assert source["tinybreaker_commit"] == TINYBREAKER_V0_3_1
    # The fixture covers exactly the inputs the builder module defines (a stale fixture fails here).
    assert set(FIXTURE["schedules"]["pixart"]) == set(inputs.SCHEDULERS) == set(SCHEDULERS)
    assert set(FIXTURE["schedules"]["sd1"]["beta"]) == {str(steps) for steps in inputs.SCHEDULE_STEPS}
    assert set(FIXTURE["samplers"]) == set(inputs.SAMPLER_CASES)
    assert all(set(case["runs"]) == set(inputs.SAMPLERS) for case in FIXTURE["samplers"].values())
    assert set(FIXTURE["t5"]["tokens"]["sd3"]) == set(inputs.T5_PROMPTS)
    assert set(FIXTURE["t5"]["sd3_embeddings"]) == set(inputs.T5_ENCODED_PROMPTS)
    assert set(FIXTURE["tiles"]) == {f"{h}x{w}/{tile}" for h, w, tile in inputs.TILE_CASES}


# --- tables and schedules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(OUR_TABLES))
def test_discrete_tables_are_bit_exact(table):
    expected = FIXTURE["tables"][table]
    schedule = DiscreteSchedule(OUR_TABLES[table]())
    assert_bit_exact(schedule.sigmas, reference(expected["sigmas"]), f"{table} sigmas")
    assert_bit_exact(schedule.log_sigmas, reference(expected["log_sigmas"]), f"{table} log_sigmas")
    timesteps = timestep_of(torch.tensor(inputs.TIMESTEP_SIGMAS), schedule)
    assert timesteps.tolist() == expected["timestep_of"]
    assert_bit_exact(schedule.sigma(torch.tensor(inputs.FRACTIONAL_TIMESTEPS)), reference(expected["sigma_at"]),
                     f"{table} sigma(t)")


@pytest.mark.parametrize("scheduler", inputs.SCHEDULERS)
@pytest.mark.parametrize("table", sorted(OUR_TABLES))
def test_schedules_are_bit_exact(table, scheduler):
    for steps in inputs.SCHEDULE_STEPS:
        expected = reference(FIXTURE["schedules"][table][scheduler][str(steps)])
        ours = scheduler_sigmas(OUR_TABLES[table](), scheduler, steps)
        if scheduler == "kl_optimal" and steps == 1:
            # The reference divides 0 by 0 here and returns [nan, 0]; we give the ramp's first point, which is the
            # first sigma of the reference's 2-step schedule (tan(atan(σ_max)) in float32, a hair off σ_max).
            assert math.isnan(float(expected[0])) and float(expected[1]) == 0.0
            first_point = reference(FIXTURE["schedules"][table][scheduler]["2"])[0]
            assert_bit_exact(ours, torch.stack([first_point, torch.tensor(0.0)]), "kl_optimal, 1 step")
            continue
        assert_bit_exact(ours, expected, f"{table} {scheduler} {steps} steps")


@pytest.mark.parametrize("scheduler", inputs.SCHEDULERS)
@pytest.mark.parametrize("table", sorted(OUR_TABLES))
def test_step_windows_are_bit_exact(table, scheduler):
    for sampler in inputs.WINDOW_SAMPLERS:
        for window in inputs.WINDOWS:
            key = "/".join(map(str, (table, sampler, scheduler) + window))
            steps, steps_start, steps_end, steps_nfactor = window
            ours = compute_sigmas(OUR_TABLES[table](), sampler=sampler, scheduler=scheduler, steps=steps,
                                  steps_start=steps_start, steps_end=steps_end, steps_nfactor=steps_nfactor)
            assert_bit_exact(ours, reference(FIXTURE["windows"][key]), key)


STAGE_FIELDS = ("sampler", "scheduler", "steps", "steps_start", "steps_end", "cfg", "noise_seed")


def test_builtin_styles_have_the_reference_stage_numbers():
    library = StyleLibrary.load_builtin()
    assert sorted(library.names()) == sorted(FIXTURE["styles"])
    for name, stages in FIXTURE["styles"].items():
        ours = library.get(name)
        for stage, expected in stages.items():
            got = {field: getattr(ours[stage], field) for field in STAGE_FIELDS}
            assert got == expected["params"], (name, stage)


@pytest.mark.parametrize("style", sorted(FIXTURE["styles"]))
def test_style_windows_are_bit_exact(style):
    for stage, expected in FIXTURE["styles"][style].items():
        params = expected["params"]
        table = OUR_TABLES[inputs.STAGE_TABLES[stage]]()
        for nfactor, sigmas in expected["sigmas"].items():
            ours = compute_sigmas(table, sampler=params["sampler"], scheduler=params["scheduler"],
                                  steps=params["steps"], steps_start=params["steps_start"],
                                  steps_end=params["steps_end"], steps_nfactor=int(nfactor))
            assert_bit_exact(ours, reference(sigmas), f"{style} {stage} detail {nfactor}")


# --- noise, start point, samplers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(inputs.NOISE_CASES))
def test_stage_noise_is_prepare_noise(case):
    shape, seed = inputs.NOISE_CASES[case]
    assert_bit_exact(stage_noise(shape, seed), reference(FIXTURE["noise"][case]), f"noise {case}")


def test_max_denoise_decision_matches():
    for key, expected in FIXTURE["max_denoise"].items():
        table, sigma0 = key.split("/")
        sigma_max = DiscreteSchedule(OUR_TABLES[table]()).sigma_max
        assert is_max_denoise(float(sigma0), sigma_max) == expected, key


# Max |ours − reference| per sampler where the result is not bit-exact, with the reason (none at present).
SAMPLER_TOLERANCE: dict[str, float] = {}


@pytest.mark.parametrize("name", inputs.SAMPLERS)
@pytest.mark.parametrize("case", sorted(inputs.SAMPLER_CASES))
def test_sampler_matches_the_reference(case, name):
    table, scheduler, steps, steps_start, steps_end, batch, latent_seed, noise_seed = inputs.SAMPLER_CASES[case]
    expected = FIXTURE["samplers"][case]
    run = expected["runs"][name]
    sigmas = compute_sigmas(OUR_TABLES[table](), sampler=name, scheduler=scheduler, steps=steps,
                            steps_start=steps_start, steps_end=steps_end)
    assert_bit_exact(sigmas, reference(run["sigmas"]), "sigmas")
    noise = stage_noise((batch,) + inputs.LATENT_SHAPE, noise_seed)
    assert_bit_exact(noise, reference(expected["noise"]), "noise")
    sigma_max = DiscreteSchedule(OUR_TABLES[table]()).sigma_max
    assert is_max_denoise(sigmas[0], sigma_max) == run["max_denoise"]
    start = noised_start(inputs.latent(batch, latent_seed), noise, sigmas[0], sigma_max)
    assert_bit_exact(start, reference(expected["starts"][repr(float(sigmas[0]))]), "start point")

    output = SAMPLERS[name](inputs.analytic_denoised, start, sigmas, seed=noise_seed)
    expected_output = reference(run["output"])
    if name in SAMPLER_TOLERANCE:
        torch.testing.assert_close(output, expected_output, rtol=0, atol=SAMPLER_TOLERANCE[name])
    else:
        assert_bit_exact(output, expected_output, f"{name} output")


# --- denoiser wrappers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", inputs.CFG_SCALES)
def test_cfg_combination_is_bit_exact(scale):
    x = inputs.small_latent(5) * 3.0
    sigma = torch.tensor([3.3, 0.7])

    def model_fn(x, sigma, context):
        return inputs.conditioned_denoised(x, sigma, context[:, 0, 0])

    cond = torch.full((1, 3, 2), inputs.COND_STRENGTH)
    uncond = torch.full((1, 3, 2), inputs.UNCOND_STRENGTH)
    ours = CFGDenoiser(model_fn, cond, uncond, scale)(x, sigma)
    assert_bit_exact(ours, reference(FIXTURE["cfg"][repr(scale)]), f"cfg {scale}")


def test_eps_wrapper_is_bit_exact():
    x = inputs.small_latent(9) * 4.0
    for key, expected in FIXTURE["eps_denoiser"].items():
        table, sigma = key.split("/")
        denoiser = EpsDenoiser(inputs.analytic_eps, OUR_TABLES[table]())
        assert_bit_exact(denoiser(x, torch.full((2,), float(sigma))), reference(expected), key)


def test_prompt_templates_match():
    for template, by_prompt in FIXTURE["templates"].items():
        for prompt, expected in by_prompt.items():
            assert apply_template(template, prompt) == expected, (template, prompt)


def test_tiny_upscaler_tile_sweeps_match():
    for case, sweeps in FIXTURE["tiles"].items():
        size, tile = case.split("/")
        height, width = map(int, size.split("x"))
        tile = int(tile)
        geometry = TileGeometry(size=tile, overlap=tile // 8, margin=tile // 8)
        for direction, expected in sweeps.items():
            ours = sweep_tiles(height, width, geometry, reverse=direction == "backward")
            assert [list(placement.read) for placement in ours] == expected["read"], (case, direction)
            assert [list(placement.write) for placement in ours] == expected["write"], (case, direction)


# --- T5 prompts: the reference's tokenizers and weighting, on a stand-in vocabulary and a tiny random T5 ----------


def stand_in_tokenizer() -> T5PromptTokenizer:
    special = {"<pad>": inputs.T5_PAD, "</s>": inputs.T5_EOS}
    return T5PromptTokenizer(inputs.stand_in_token_ids, special.get, source="stand-in")


@pytest.mark.parametrize("mode", sorted(inputs.T5_MIN_LENGTHS))
def test_t5_tokens_and_weights_match(mode):
    tokenizer = stand_in_tokenizer()
    for prompt, expected in FIXTURE["t5"]["tokens"][mode].items():
        # max_length=None: the reference never cuts; our 512-token cut (limits.py) has tests of its own
        ids, weights = tokenizer.tokenize_with_weights(prompt, min_length=inputs.T5_MIN_LENGTHS[mode], max_length=None)
        assert (ids, weights) == (expected["ids"], expected["weights"]), prompt


# ComfyUI's T5 and ours (transformers' T5EncoderModel) round differently (ComfyUI scales k by sqrt(d_kv) so that
# scaled_dot_product_attention's 1/sqrt(d_kv) cancels; T5 has no scaling), so the embeddings agree to float32
# rounding only. Measured on the tiny T5, values up to 3.1: max |difference| 2.0e-6 for the unweighted empty prompt,
# 4.1e-6 for the weighted ones (transformers 5.x; 0.6e-6 and 1.7e-6 with A1111's 4.30.2). A weighting error
# (wrong tokens, wrong empty sequence) moves values by ~0.1.
T5_EMBEDDING_TOLERANCE = 1e-5


def test_t5_weighted_embeddings_match():
    encoder = load_t5_encoder(t5_state_dict(**inputs.TINY_T5), mode="cpu", compute_dtype=torch.float32)  # as the fixture
    tokenizer = stand_in_tokenizer()
    for prompt, expected in FIXTURE["t5"]["sd3_embeddings"].items():
        ours = encode_t5_prompt(encoder, tokenizer, prompt, min_length=inputs.T5_MIN_LENGTHS["sd3"])
        torch.testing.assert_close(ours, reference(expected), rtol=0, atol=T5_EMBEDDING_TOLERANCE, msg=prompt)

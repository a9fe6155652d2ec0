"""The whole standalone pipeline on tiny random models: encode → base → transcode → refine → decode."""

import hashlib
import io

import pytest
import torch

from tinybreaker_ext.generation import generate_images, resolve_settings
from tinybreaker_ext.model_files import ModelFileSet
from tinybreaker_ext.pipeline import TinyBreakerPipeline
from tinybreaker_ext.prompt.metadata import parse_infotext
from tinybreaker_ext.stage_params import StageParams


@pytest.fixture(scope="module")
def files(tiny_model_folder):
    _folder, paths = tiny_model_folder
    return ModelFileSet(checkpoint=paths["checkpoint1"], t5=paths["t5"], t5_tokenizer=paths["t5_tokenizer"],
                        clip_tokenizer=paths["clip_tokenizer"], tokenizer_search={"allow_download": False})


def png_bytes(result):
    buffers = []
    for image in result.pil_images():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        buffers.append(hashlib.sha256(buffer.getvalue()).hexdigest())
    return buffers


def generate(files, prompt, **kwargs):
    return generate_images(files, prompt=prompt, width=kwargs.pop("width", 64), height=kwargs.pop("height", 48),
                           **kwargs)


def test_same_seed_gives_the_same_image_bytes_and_another_seed_another_image(files):
    first = generate(files, "a red cat --seed 5")
    again = generate(files, "a red cat --seed 5")
    other = generate(files, "a red cat --seed 6")
    assert first.images.shape == (1, 3, 48, 64)
    assert png_bytes(first) == png_bytes(again)
    assert png_bytes(first) != png_bytes(other)
    assert torch.isfinite(first.images).all() and 0 <= first.images.min() and first.images.max() <= 1


def test_prototype0_runs_with_both_decoders(files, tiny_model_folder):
    _folder, paths = tiny_model_folder
    files0 = ModelFileSet(checkpoint=paths["checkpoint0"], t5=files.t5, t5_tokenizer=files.t5_tokenizer,
                          clip_tokenizer=files.clip_tokenizer, tokenizer_search=files.tokenizer_search)
    fast = generate(files0, "a dog", decoder="fast")
    full = generate(files0, "a dog", decoder="high_quality")
    assert fast.images.shape == full.images.shape == (1, 3, 48, 64)
    assert not torch.equal(fast.images, full.images)


def test_infotext_parses_with_the_webui_grammar(files):
    result = generate(files, "a red cat, (studio light:1.2) --seed 9 --aspect 3:2", negative="blurry, dark")
    text = result.infotexts[0]
    prompt_line, parameters_line = text.rsplit("\n", 1)
    assert prompt_line.startswith("a red cat, (studio light:1.2) --seed 9 --aspect 3:2 --no blurry, dark")
    parameters = parse_infotext(text)
    assert parameters["Seed"] == "9"
    assert parameters["Size"] == "64x48"
    assert parameters["TB style"] == "PHOTO"
    assert "sampler_name:uni_pc" in parameters["TB base parameters"]


def test_batch_images_differ_and_each_gets_its_own_seed(files):
    result = generate(files, "a cat --seed 3", batch=2)
    assert result.images.shape[0] == 2
    assert not torch.equal(result.images[0], result.images[1])
    assert parse_infotext(result.infotexts[1])["Seed"] == "4"
    single = generate(files, "a cat --seed 4")
    # equal up to float rounding: batched convolutions may sum in another order than single ones
    assert (result.images[1] - single.images[0]).abs().max() < 1e-4


def test_changing_only_the_refiner_reuses_the_cached_base(files, monkeypatch):
    pipeline = TinyBreakerPipeline(files.checkpoint, files.t5, tokenizer_path=files.t5_tokenizer)
    stage = StageParams(sampler="euler", scheduler="normal", steps=4, steps_start=1, cfg=3.0)
    first = pipeline.base(["a cat"], [""], stage, width=32, height=32, seeds=[1])
    calls = []
    monkeypatch.setattr(pipeline, "encode", lambda *a, **k: calls.append(a) or torch.zeros(1, 77, 32))
    again = pipeline.base(["a cat"], [""], stage, width=32, height=32, seeds=[1])
    assert torch.equal(first, again) and calls == []
    pipeline.base(["a cat"], [""], stage.copy(cfg=4.0), width=32, height=32, seeds=[1])
    assert calls, "a changed base parameter must run the base stage again"


def test_unchanged_prompt_never_runs_t5_again(files):
    pipeline = TinyBreakerPipeline(files.checkpoint, files.t5, tokenizer_path=files.t5_tokenizer)
    encoder = pipeline.t5("cpu")
    runs = []
    original = encoder.encode
    encoder.encode = lambda ids: runs.append(ids.shape) or original(ids)
    a = pipeline.encode("a red cube", t5_mode="cpu")
    b = pipeline.encode("a red cube", t5_mode="cpu")
    assert torch.equal(a, b) and len(runs) == 1


def test_cancel_from_the_callback_stops_between_steps(files):
    from tinybreaker_ext.errors import Cancelled

    pipeline = TinyBreakerPipeline(files.checkpoint, files.t5, tokenizer_path=files.t5_tokenizer)
    stage = StageParams(sampler="dpmpp_2m", scheduler="karras", steps=8, steps_start=0, cfg=3.0)
    seen = []

    def stop_after_two(step, total, x, denoised):
        seen.append(step)
        if step == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        pipeline.base(["a cat"], [""], stage, width=32, height=32, seeds=[1], callback=stop_after_two)
    assert seen == [0, 1]
    assert pipeline.last_denoised.shape == (1, 4, 4, 4)


def test_style_and_inline_parameters_resolve_in_the_reference_order():
    settings = resolve_settings("a cat --style COMIC --cfg-shift 2 --detail-level high", seed=11)
    assert settings.style == "COMIC"
    assert settings.base.sampler == "deis" and settings.base.scheduler == "sgm_uniform"
    assert settings.base.cfg == pytest.approx(5.2 + 0.4)
    assert settings.refiner.steps_nfactor == 1
    assert settings.base.noise_seed == 11


def test_bad_size_is_a_parameter_error(files):
    from tinybreaker_ext.errors import ParameterError

    with pytest.raises(ParameterError, match="width"):
        generate(files, "a cat", width=60, height=48)

"""The whole standalone pipeline on tiny random models: encode → base → transcode → refine → decode.
The embedded refiner and SD1 decoder need diffusers (absent on A1111), so these tests skip without it."""

import hashlib
import io

import pytest
import torch

pytest.importorskip("diffusers")

from builders.infotext import parse_infotext  # noqa: E402
from tinybreaker_ext.generation import plan_for, run_plan  # noqa: E402
from tinybreaker_ext.image_files import pil_images
from tinybreaker_ext.model_files import ModelFileSet
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.plan import ImageRequest


@pytest.fixture(scope="module")
def files(tiny_model_folder):
    _folder, paths = tiny_model_folder
    return ModelFileSet(checkpoint=paths["checkpoint1"], t5=paths["t5"], t5_tokenizer=paths["t5_tokenizer"],
                        clip_tokenizer=paths["clip_tokenizer"], tokenizer_search={"allow_download": False})


def png_bytes(result):
    buffers = []
    for image in pil_images(result.images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        buffers.append(hashlib.sha256(buffer.getvalue()).hexdigest())
    return buffers


def generate(files, prompt, *, negative="", width=64, height=48, batch=1, seed=1, decoder="high_quality", **fields):
    request = ImageRequest(prompt, negative, width, height, seed, batch)
    return run_plan(files, plan_for(TinyBreakerParams(enabled=True, **fields), request), decoder=decoder)


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
    result = generate(files, "a red cat, (studio light:1.2) --seed 9", negative="blurry, dark")
    text = result.infotexts[0]
    parameters = parse_infotext(text)
    assert parameters["Prompt"] == "a red cat, (studio light:1.2) --seed 9"
    assert parameters["Negative prompt"] == "blurry, dark"
    assert parameters["Seed"] == "9"
    assert parameters["Size"] == "64x48"
    assert parameters["TinyBreaker"] == "on" and parameters["TinyBreaker style"] == "PHOTO"  # the WebUI's fields
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


def test_bad_size_is_a_parameter_error(files):
    from tinybreaker_ext.errors import ParameterError

    with pytest.raises(ParameterError, match="width"):
        generate(files, "a cat", width=60, height=48)


def test_upscale_on_enlarges_by_the_upscale_factor(files):
    result = generate(files, "a cat --upscale on --seed 2", width=64, height=48)
    assert result.images.shape == (1, 3, 96, 128)  # the upscale_by field's default, 2
    assert parse_infotext(result.infotexts[0])["Size"] == "128x96"  # the saved image's size

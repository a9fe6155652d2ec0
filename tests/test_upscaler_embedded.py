"""The standalone Tiny Upscaler on the tiny prototype0/1 files: embedded SD1 UNet + CLIP, the checkpoint's TAESD."""

import dataclasses

import pytest
import torch

from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.plan import ImageRequest, make_plan
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.pipeline import TinyBreakerPipeline
from tinybreaker_ext.standalone import EmbeddedRefiner
from tinybreaker_ext.upscaler import TileGeometry, upscale_with_embedded_refiner, upscaler_vae


def make_refiner(paths, checkpoint_key="checkpoint1") -> EmbeddedRefiner:
    pipeline = TinyBreakerPipeline(paths[checkpoint_key], paths["t5"], tokenizer_path=paths["t5_tokenizer"])
    return EmbeddedRefiner(pipeline, clip_tokenizer_path=paths["clip_tokenizer"],
                           tokenizer_search={"allow_download": False})


@pytest.fixture(scope="module")
def refiner(tiny_model_folder):
    return make_refiner(tiny_model_folder[1])


@pytest.fixture(scope="module")
def images():
    return torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))


def upscale_stage(user_text="a cat --upscale on", **upscaler_changes):
    plan = make_plan(TinyBreakerParams(enabled=True, style="PHOTO"), ImageRequest(user_text, seed=1),
                     StyleLibrary.load_builtin())
    assert plan.params.upscale
    return dataclasses.replace(plan.upscaler, **upscaler_changes)


@pytest.fixture(scope="module")
def reference(refiner, images):
    pytest.importorskip("diffusers")  # the embedded UNet and decoders; absent on A1111's stack
    """The default style's upscaler at the reference workflow's factor (3.0), turned on from the prompt."""
    return upscale_with_embedded_refiner(refiner, images, upscale_stage(), 3.0)


def test_upscales_to_k_times_the_size_deterministically(refiner, images, reference):
    first = reference
    again = upscale_with_embedded_refiner(refiner, images, upscale_stage(), 3.0)
    assert first.shape == (1, 3, 72, 96) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert torch.isfinite(first).all() and 0 <= float(first.min()) and float(first.max()) <= 1
    other_seed = upscale_with_embedded_refiner(refiner, images, upscale_stage(noise_seed=2), 3.0)
    assert not torch.equal(first, other_seed)


def test_only_the_styles_upscaler_prompt_conditions_the_model(refiner, images, reference):
    other_user_prompt = upscale_with_embedded_refiner(refiner, images, upscale_stage("a red bus --upscale on"), 3.0)
    other_upscaler_prompt = upscale_with_embedded_refiner(refiner, images, upscale_stage(prompt="a red bus"), 3.0)
    assert torch.equal(reference, other_user_prompt)
    assert not torch.equal(reference, other_upscaler_prompt)


def test_many_small_tiles(refiner, images):
    pytest.importorskip("diffusers")
    stage = upscale_stage()
    tiled = upscale_with_embedded_refiner(refiner, images, stage, 2.0, geometry=TileGeometry(size=4, overlap=1,
                                                                                             margin=1))
    whole = upscale_with_embedded_refiner(refiner, images, stage, 2.0)
    assert tiled.shape == whole.shape == (1, 3, 48, 64)
    assert not torch.equal(tiled, whole)  # 6×8 latent: 3×3 tiles instead of one


def test_prototype0_has_no_upscaler_vae(tiny_model_folder, images):
    refiner0 = make_refiner(tiny_model_folder[1], "checkpoint0")
    with pytest.raises(ModelFileError) as error:
        upscale_with_embedded_refiner(refiner0, images, upscale_stage(), 3.0)
    assert "prototype0" in str(error.value) and "refiner.first_stage_model." in str(error.value)


def test_a_file_with_an_sdxl_refiner_is_named_in_the_upscaler_vae_error():
    from types import SimpleNamespace

    from tinybreaker_ext.files.classify import FileKind

    pipeline = SimpleNamespace(checkpoint_info=SimpleNamespace(kind=FileKind.TINYBREAKER_SDXL),
                               checkpoint=SimpleNamespace(path="tb_sdxl.safetensors"))
    with pytest.raises(ModelFileError, match="a TinyBreaker checkpoint with an SDXL refiner has no upscaler VAE"):
        upscaler_vae(pipeline)


def test_upscaler_vae_is_loaded_once_per_pipeline(refiner):
    assert upscaler_vae(refiner.pipeline) is upscaler_vae(refiner.pipeline)
    assert upscaler_vae(refiner.pipeline).encoder is not None and upscaler_vae(refiner.pipeline).decoder is not None

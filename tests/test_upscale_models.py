"""The command line's upscale model (``--upscale-model``): .safetensors only, read with spandrel when it is installed,
refused clearly otherwise; tiled like ComfyUI's upscale-with-model node; run before the Tiny Upscaler's refine in
both modes. spandrel is absent on the hosts' pinned stacks: the tests that need it skip there."""

import dataclasses
import os
import sys

import pytest
import torch

from builders.upscale_models import write_esrgan
from tinybreaker_ext import upscale_models
from tinybreaker_ext.errors import ModelFileError, ModelNotFoundError, ParameterError
from tinybreaker_ext.upscale_models import check_upscale_model_file, find_upscale_model, load_upscale_model


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    return write_esrgan(str(tmp_path_factory.mktemp("upscale_models")))


def test_a_pth_or_ckpt_is_refused_before_anything_is_read(tmp_path):
    for name in ("4x-UltraSharp.pth", "model.ckpt"):
        path = tmp_path / name
        path.write_bytes(b"\x80\x02}q\x00." + b"\0" * 64)
        with pytest.raises(ParameterError) as error:
            load_upscale_model(str(path))
        assert error.value.field == "upscale_model" and ".safetensors" in str(error.value)
        assert "unpickled" in str(error.value)


def test_without_spandrel_the_option_is_refused_with_what_to_install(esrgan, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel → ImportError
    with pytest.raises(ParameterError) as error:
        check_upscale_model_file(esrgan)
    assert error.value.field == "upscale_model" and "pip install spandrel" in str(error.value)


def test_a_name_is_looked_for_in_the_upscale_model_folders(tmp_path, esrgan):
    models = tmp_path / "models"
    (models / "ESRGAN").mkdir(parents=True)
    target = models / "ESRGAN" / "tiny.safetensors"
    target.write_bytes(open(esrgan, "rb").read())
    assert find_upscale_model("tiny.safetensors", str(models)) == str(target)
    assert find_upscale_model(esrgan, str(models)) == esrgan
    with pytest.raises(ModelNotFoundError, match="found: tiny.safetensors"):
        find_upscale_model("nope.safetensors", str(models))


# -- with spandrel -------------------------------------------------------------------------------------------------
def test_the_tiny_esrgan_is_recognised_and_upscales_four_times(esrgan):
    pytest.importorskip("spandrel")
    model = load_upscale_model(esrgan)
    assert (model.architecture, model.scale) == ("ESRGAN", 4)
    images = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    out = model.upscale(images)
    assert out.shape == (2, 3, 48, 80) and out.dtype == torch.float32
    with torch.no_grad():
        direct = model.module(images).clamp(0, 1)
    assert torch.equal(out, direct)  # one tile: exactly the model's output


def test_large_images_are_upscaled_in_blended_tiles(esrgan, monkeypatch):
    pytest.importorskip("spandrel")
    model = load_upscale_model(esrgan)
    calls = []
    module = model.module
    model = dataclasses.replace(model, module=lambda tile: calls.append(tuple(tile.shape)) or module(tile))
    model.module.parameters = module.parameters
    monkeypatch.setattr(upscale_models, "TILE_PX", 16)
    monkeypatch.setattr(upscale_models, "TILE_OVERLAP_PX", 4)
    images = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    out = model.upscale(images)
    assert out.shape == (1, 3, 160, 144) and len(calls) > 4
    with torch.no_grad():
        direct = module(images).clamp(0, 1)
    assert float((out - direct).abs().mean()) < 0.05  # tile seams only where the receptive field is cut


def test_a_safetensors_file_that_is_no_upscale_model_is_a_file_error(tmp_path):
    pytest.importorskip("spandrel")
    from builders.common import save_safetensors

    path = save_safetensors({"some.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not an upscale model"):
        load_upscale_model(path)


@pytest.fixture(scope="module")
def files(tiny_model_folder, esrgan):
    pytest.importorskip("diffusers")
    from tinybreaker_ext.model_files import ModelFileSet

    _folder, paths = tiny_model_folder
    return ModelFileSet(checkpoint=paths["checkpoint1"], t5=paths["t5"], t5_tokenizer=paths["t5_tokenizer"],
                        clip_tokenizer=paths["clip_tokenizer"], tokenizer_search={"allow_download": False},
                        upscale_model=esrgan)


def generate(files, prompt, **fields):
    from tinybreaker_ext.generation import check_files_for_plan, plan_for, run_plan
    from tinybreaker_ext.params import TinyBreakerParams
    from tinybreaker_ext.plan import ImageRequest

    plan = plan_for(TinyBreakerParams(enabled=True, **fields), ImageRequest(prompt, "", 64, 48, 3, 1))
    check_files_for_plan(files, plan)
    return run_plan(files, plan)


def test_the_command_lines_generation_pre_upscales_in_both_modes(files, esrgan):
    pytest.importorskip("spandrel")
    from builders.infotext import parse_infotext

    name = os.path.basename(esrgan)
    plain = generate(files, "a red cube")
    upscaled = generate(files, f"a red cube --upscale --upscale-model {name}", upscale_by=1.5)
    bilinear = generate(files, "a red cube --upscale", upscale_by=1.5)
    enhanced = generate(files, f"a red cube --upscale enhancer --upscale-model {name}", upscale_by=1.5)
    assert upscaled.images.shape == (1, 3, 72, 96) and enhanced.images.shape == plain.images.shape == (1, 3, 48, 64)
    assert not torch.allclose(upscaled.images, bilinear.images, atol=1e-3)  # the model's image, not a resize
    assert not torch.allclose(enhanced.images, plain.images, atol=1e-3)  # re-detailed, same size
    fields = parse_infotext(enhanced.infotexts[0])
    assert fields["Size"] == "64x48" and fields["TinyBreaker upscale mode"] == "enhancer"
    assert fields["TinyBreaker upscale model"] == name
    assert parse_infotext(upscaled.infotexts[0])["Size"] == "96x72"


def test_the_plan_needs_its_upscale_model_resolved_to_a_file(files):
    from tinybreaker_ext.generation import check_files_for_plan, plan_for
    from tinybreaker_ext.params import TinyBreakerParams
    from tinybreaker_ext.plan import ImageRequest

    plan = plan_for(TinyBreakerParams(enabled=True, upscale=True, upscale_model="x.safetensors"),
                    ImageRequest("a cube", "", 64, 48, 3, 1))
    with pytest.raises(ParameterError) as error:
        check_files_for_plan(dataclasses.replace(files, upscale_model=None), plan)
    assert error.value.field == "upscale_model"

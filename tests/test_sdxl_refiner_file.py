"""TinyBreaker files with an SDXL refiner (docs/model-files.md "TinyBreaker files with an SDXL refiner"):
classification by content, the SDXL layouts at full size on the meta device, the embedded SDXL refiner against the
diffusers/transformers models it was built from, and a whole command-line generation with no transcoder."""

from __future__ import annotations

import pytest
import torch

from builders.files import tinybreaker_keys, tinybreaker_sdxl_keys, write_model
from tinybreaker_ext.errors import ModelFileError
from tinybreaker_ext.files.classify import CHECKPOINT_KINDS, FileKind, classify
from tinybreaker_ext.files.finder import ModelFinder


def test_an_sdxl_refiner_file_is_classified_by_its_unet_and_listed_as_a_checkpoint(tmp_path):
    path = write_model(tmp_path / "a_anything.safetensors", tinybreaker_sdxl_keys())
    info = classify(path)
    assert info.kind == FileKind.TINYBREAKER_SDXL
    assert info.refiner_family == "sdxl"
    assert info.kind in CHECKPOINT_KINDS
    assert "SDXL refiner" in info.description
    sd1 = classify(write_model(tmp_path / "b_sd1.safetensors", tinybreaker_keys(1)))
    assert sd1.refiner_family == "sd1"
    # an SD1 file stays the default when both are present, whatever the names
    assert [item.kind for item in ModelFinder([tmp_path]).candidates("checkpoint")] == [
        FileKind.TINYBREAKER_PROTOTYPE1, FileKind.TINYBREAKER_SDXL]


def test_the_model_lists_offer_an_sdxl_refiner_file_as_a_checkpoint(tmp_path):
    from builders.files import found_paths
    from tinybreaker_ext.files.finder import ModelFinder

    path = write_model(tmp_path / "TinyBreaker" / "tb_xl.safetensors", tinybreaker_sdxl_keys())
    assert found_paths(ModelFinder([str(tmp_path)]), "checkpoint") == [str(path)]
    assert found_paths(ModelFinder([str(tmp_path)]), "t5") == []


def test_an_sdxl_refiner_without_its_second_text_encoder_is_refused_as_incomplete(tmp_path):
    keys = {key: value for key, value in tinybreaker_sdxl_keys().items() if ".embedders.1." not in key}
    with pytest.raises(ModelFileError, match=r"embedders\.1\..*not a complete TinyBreaker file"):
        classify(write_model(tmp_path / "broken.safetensors", keys))


diffusers = pytest.importorskip("diffusers")

from builders.sdxl import (CLIP_G, SDXL_UNET_KEY_COUNT, SDXL_UNET_PARAMETERS, TINY_SDXL_UNET,  # noqa: E402
                           open_clip_state_dict_of, sdxl_conditioner_full_meta_state_dict,
                           sdxl_unet_diffusers, sdxl_unet_full_meta_state_dict, tiny_clip_g_model,
                           unet_to_ldm_state_dict)
from tinybreaker_ext.models.clip_text import load_clip_text  # noqa: E402
from tinybreaker_ext.models.sd1_refiner import infer_unet_config  # noqa: E402
from tinybreaker_ext.models.sdxl_refiner import (SDXLRefiner, convert_open_clip_state_dict,  # noqa: E402
                                                 encode_sdxl_prompt, load_sdxl_text_encoders)


def test_full_sdxl_unet_layout_is_inferred_and_consumed_without_missing_or_unexpected_keys():
    ldm = sdxl_unet_full_meta_state_dict()
    # Facts about SDXL base 1.0's single file, independent of our code.
    assert len(ldm) == SDXL_UNET_KEY_COUNT
    assert sum(t.numel() for t in ldm.values()) == SDXL_UNET_PARAMETERS
    for key, shape in {"label_emb.0.0.weight": (1280, 2816), "input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight":
                       (1280, 2048), "input_blocks.4.1.proj_in.weight": (640, 640),
                       "middle_block.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
                       "output_blocks.2.2.conv.weight": (1280, 1280, 3, 3), "out.2.weight": (4, 320, 3, 3)}.items():
        assert tuple(ldm[key].shape) == shape, key
    config = infer_unet_config(ldm)
    assert config["block_out_channels"] == [320, 640, 1280]
    assert config["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert config["transformer_layers_per_block"] == [10, 2, 10]
    assert config["cross_attention_dim"] == 2048
    assert config["projection_class_embeddings_input_dim"] == 2816  # pooled CLIP-G 1280 + 6 × 256 time ids
    assert config["attention_head_dim"] == [5, 10, 20] and config["use_linear_projection"]
    # loading checks that the converted keys are exactly the model's, with the model's shapes
    unet = SDXLRefiner.from_state_dict(ldm, device="meta", dtype=torch.float16).unet
    assert sum(p.numel() for p in unet.parameters()) == SDXL_UNET_PARAMETERS


def test_full_sdxl_text_encoders_load_on_the_meta_device():
    conditioner = sdxl_conditioner_full_meta_state_dict()
    assert conditioner["embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"].shape == (3840, 1280)
    assert conditioner["embedders.1.model.text_projection"].shape == (1280, 1280)
    clip_l, clip_g = load_sdxl_text_encoders(conditioner, device="meta", dtype=torch.float16)
    assert (clip_l.config.hidden_size, clip_l.config.num_hidden_layers, clip_l.config.hidden_act) == (768, 12,
                                                                                                      "quick_gelu")
    assert (clip_g.config.hidden_size, clip_g.config.num_hidden_layers, clip_g.config.num_attention_heads,
            clip_g.config.projection_dim, clip_g.config.hidden_act) == (1280, CLIP_G["layers"], 20, 1280, "gelu")


def test_clip_g_from_open_clip_names_matches_the_model_it_was_written_from():
    reference = tiny_clip_g_model(seed=3)
    loaded = load_clip_text(convert_open_clip_state_dict(open_clip_state_dict_of(reference)), device="cpu",
                            dtype=torch.float32, hidden_act="gelu", with_projection=True)
    ids = torch.tensor([[1, 5, 7, 9, 3]])
    want = reference(input_ids=ids, output_hidden_states=True)
    got = loaded(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(got.text_embeds, want.text_embeds)
    torch.testing.assert_close(got.hidden_states[-2], want.hidden_states[-2])


def test_sdxl_refiner_eps_is_the_diffusers_unet_with_pooled_text_and_image_size_time_ids():
    reference = sdxl_unet_diffusers(**TINY_SDXL_UNET, seed=4)
    ldm = unet_to_ldm_state_dict(reference, num_res_blocks=TINY_SDXL_UNET["num_res_blocks"],
                                 attention_levels=TINY_SDXL_UNET["attention_levels"])
    refiner = SDXLRefiner.from_state_dict(ldm, device="cpu", dtype=torch.float32)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 6, 10, generator=generator)
    tokens = torch.randn(1, 77, TINY_SDXL_UNET["context_dim"], generator=generator)
    pooled = torch.randn(1, TINY_SDXL_UNET["pooled_dim"], generator=generator)
    context = torch.cat([tokens, pooled[:, None].expand(-1, 77, -1)], dim=-1)
    t = torch.tensor([300.0, 300.0])
    got = refiner.eps(x, t, context)
    time_ids = torch.tensor([[48.0, 80.0, 0.0, 0.0, 48.0, 80.0]] * 2)  # (height, width, crop, target) in pixels
    with torch.no_grad():
        want = reference(x, t, encoder_hidden_states=tokens.expand(2, -1, -1),
                         added_cond_kwargs={"text_embeds": pooled.expand(2, -1), "time_ids": time_ids}).sample
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, refiner.eps(x, t, torch.cat([tokens, 0 * pooled[:, None].expand(-1, 77, -1)], -1)))


def test_an_sd1_unet_is_inferred_as_such():
    from builders.sd1 import sd1_unet_ldm_state_dict

    assert "addition_embed_type" not in infer_unet_config(sd1_unet_ldm_state_dict())


def test_sdxl_conditioning_is_penultimate_l_and_g_side_by_side_with_the_pooled_g(tiny_model_folder):
    from builders.sdxl import sdxl_conditioner_state_dict
    from tinybreaker_ext.models.clip_tokenizer import load_clip_tokenizer

    _folder, paths = tiny_model_folder
    tokenizer = load_clip_tokenizer(paths["clip_tokenizer"])
    clip_l, clip_g = load_sdxl_text_encoders(sdxl_conditioner_state_dict(seed=2), device="cpu", dtype=torch.float32)
    context = encode_sdxl_prompt(clip_l, clip_g, tokenizer, "a red cat")
    width_l, width_g = clip_l.config.hidden_size, clip_g.config.hidden_size
    assert context.shape == (1, 77, width_l + width_g + clip_g.config.projection_dim)
    ids = tokenizer("a red cat")["input_ids"]
    padding = 77 - len(ids)
    ids_l = torch.tensor([ids + [ids[-1]] * padding])
    ids_g = torch.tensor([ids + [0] * padding])  # CLIP-G pads with token 0
    with torch.no_grad():
        want_l = clip_l(input_ids=ids_l, output_hidden_states=True).hidden_states[-2]
        out_g = clip_g(input_ids=ids_g, output_hidden_states=True)
    torch.testing.assert_close(context[..., :width_l], want_l)
    torch.testing.assert_close(context[..., width_l:width_l + width_g], out_g.hidden_states[-2])
    torch.testing.assert_close(context[0, :, width_l + width_g:], out_g.text_embeds.expand(77, -1))


@pytest.fixture(scope="module")
def sdxl_files(tiny_model_folder, tmp_path_factory):
    from builders.common import save_safetensors
    from builders.tinybreaker_files import tinybreaker_metadata, tinybreaker_sdxl_state_dict
    from tinybreaker_ext.model_files import ModelFileSet

    _folder, paths = tiny_model_folder
    checkpoint = save_safetensors(tinybreaker_sdxl_state_dict(seed=0),
                                  tmp_path_factory.mktemp("sdxl") / "tinybreaker_sdxl.safetensors",
                                  tinybreaker_metadata("_sdxl"))
    return ModelFileSet(checkpoint=checkpoint, t5=paths["t5"], t5_tokenizer=paths["t5_tokenizer"],
                        clip_tokenizer=paths["clip_tokenizer"], tokenizer_search={"allow_download": False})


def test_the_command_line_refines_with_the_embedded_sdxl_model_without_a_transcoder(sdxl_files, monkeypatch):
    from tinybreaker_ext.generation import plan_for, run_plan
    from tinybreaker_ext.prompt.file_defaults import checkpoint_file_defaults
    from tinybreaker_ext.params import TinyBreakerParams
    from tinybreaker_ext.pipeline import TinyBreakerPipeline
    from tinybreaker_ext.plan import ImageRequest

    def no_transcode(*args, **kwargs):
        raise AssertionError("an SDXL refiner needs no transcode")

    monkeypatch.setattr(TinyBreakerPipeline, "transcode", no_transcode)
    calls = []
    original = SDXLRefiner.eps
    monkeypatch.setattr(SDXLRefiner, "eps", lambda self, *args: calls.append(args[0].shape) or original(self, *args))
    result = run_plan(sdxl_files, plan_for(TinyBreakerParams(enabled=True, style="PHOTO"),
                                           ImageRequest("a red cat", "", 64, 48, 3, 1),
                                           file_defaults=checkpoint_file_defaults(sdxl_files.checkpoint)))
    assert result.images.shape == (1, 3, 48, 64)
    assert torch.isfinite(result.images).all()
    assert calls and all(shape[-2:] == (6, 8) for shape in calls)
    assert len(calls) >= result.plan.refine_steps > 0


def test_an_sdxl_refiner_file_has_no_fast_decoder_and_says_so(sdxl_files):
    from tinybreaker_ext.generation import plan_for, run_plan
    from tinybreaker_ext.prompt.file_defaults import checkpoint_file_defaults
    from tinybreaker_ext.params import TinyBreakerParams
    from tinybreaker_ext.plan import ImageRequest

    with pytest.raises(ModelFileError, match="no TAESD decoder"):
        run_plan(sdxl_files, plan_for(TinyBreakerParams(enabled=True), ImageRequest("a cat", "", 64, 48, 3, 1),
                                      file_defaults=checkpoint_file_defaults(sdxl_files.checkpoint)), decoder="fast")


def test_the_sdxl_refiner_samples_on_sd1s_sigma_table():
    from tinybreaker_ext.sampling.schedules import discrete_sigmas, sd1_sigmas

    # SDXL base 1.0's scheduler_config.json: scaled_linear, 0.00085 .. 0.012, 1000 steps, epsilon (as SD1's)
    assert torch.equal(discrete_sigmas("scaled_linear", 0.00085, 0.012, 1000), sd1_sigmas())

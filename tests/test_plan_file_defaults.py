"""A TinyBreaker file's metadata defaults (maketb's ``denoising.*`` / ``image.*`` keys) in the one plan: they take
the place of the style library's defaults; what a style sets itself, the fields and the inline arguments win
(docs/design.md "One plan"). Both front ends read them from the checkpoint they use."""

from __future__ import annotations

import os

import pytest

from builders.files import tinybreaker_keys, write_model
from builders.params import script_args
from tinybreaker_ext.generation import plan_for
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.plan import ImageRequest
from tinybreaker_ext.prompt.file_defaults import FileDefaults, checkpoint_file_defaults, read_file_defaults

# prototype0_metadata.conf's keys (TinyBreakerTools), with values that differ from the built-in defaults
METADATA = {"modelspec.title": "TinyBreaker prototype1", "image.aspect_ratio": "3:2", "image.scale": "1.0",
            "image.batch_size": "1", "denoising.base.sampler": "euler", "denoising.base.steps": "16",
            "denoising.base.cfg": "4.2", "denoising.refiner.steps": "20", "denoising.refiner.steps_start": "9",
            "denoising.refiner.cfg": "3.0", "denoising.refiner.negative": "(ugly:1.5){. $@}",
            "denoising.refiner.sampler": "euler"}
REQUEST = ImageRequest("a red cat", "", 640, 512, 7, 1)


def plan(fields=None, request=REQUEST, metadata=METADATA):
    return plan_for(TinyBreakerParams(enabled=True, **(fields or {})), request,
                    file_defaults=read_file_defaults(metadata, "tb.safetensors"))


def test_metadata_strings_become_typed_stage_values_and_bad_ones_are_named():
    defaults = read_file_defaults({**METADATA, "denoising.base.steps": "many", "denoising.base.nonsense": "1",
                                   "image.aspect_ratio": "wide"}, "tb.safetensors")
    assert defaults.stages["refiner.steps"] == 20 and defaults.stages["base.cfg"] == 4.2
    assert defaults.stages["refiner.negative"] == "(ugly:1.5){. $@}"
    assert "base.steps" not in defaults.stages and "base.nonsense" not in defaults.stages
    assert defaults.aspect is None and defaults.scale == "1.0"
    assert any("tb.safetensors: metadata denoising.base.steps='many'" in w for w in defaults.warnings)
    assert any("image.aspect_ratio" in w for w in defaults.warnings)
    assert read_file_defaults({"modelspec.title": "x"}) == FileDefaults()  # modelspec only: nothing to apply
    empty = read_file_defaults({"denoising.base.steps": "", "denoising.base.cfg": ""}, "tb.safetensors").warnings
    assert [w.split("=")[0] for w in empty] == ["tb.safetensors: metadata denoising.base.steps",
                                                 "tb.safetensors: metadata denoising.base.cfg"]


def test_style_none_takes_every_default_from_the_file():
    result = plan({"style": "none"})
    assert (result.base.sampler, result.base.steps, result.base.cfg) == ("euler", 16, 4.2)
    assert (result.refine.steps, result.refine.steps_start, result.refine.cfg) == (20, 9, 3.0)
    assert result.refine.sampler == "euler"
    assert result.texts().refine_negative.startswith("(ugly:1.5)")


def test_a_style_keeps_what_it_sets_and_takes_the_file_defaults_for_the_rest():
    without = plan({"style": "PHOTO"}, metadata={})
    result = plan({"style": "PHOTO"})
    # PHOTO sets base.steps 14, refiner.steps_start 7, refiner.cfg 2.5 and its refiner negative itself
    assert (result.base.steps, result.refine.steps_start, result.refine.cfg) == (14, 7, 2.5)
    assert result.texts().refine_negative == without.texts().refine_negative
    # ... and inherits the sampler, base CFG and refine steps from the defaults: the file's now
    assert (without.base.sampler, without.base.cfg, without.refine.steps) == ("uni_pc", 3.4, 11)
    assert (result.base.sampler, result.base.cfg, result.refine.steps) == ("euler", 4.2, 20)


def test_fields_and_inline_arguments_win_over_the_file():
    result = plan({"style": "none", "base_steps": 10, "base_cfg": 5.0, "refine_cfg": 6.0})
    assert (result.base.steps, result.base.cfg, result.refine.cfg) == (10, 5.0, 6.0)
    inline = plan({"style": "none"}, ImageRequest("a cat --aspect 1:1", "", None, None, 7, 1))
    assert (inline.width, inline.height) == (1024, 1024)  # inline 1:1 at the file's scale 1.0 (medium)


def test_the_file_aspect_and_scale_size_a_request_without_one():
    result = plan(request=ImageRequest("a cat", "", None, None, 7, 1))
    assert (result.width, result.height) == (1248, 832)  # 3:2 at scale 1.0; without the file: 1:1 large 1248x1248
    assert (plan(request=ImageRequest("a cat", "", None, None, 7, 1), metadata={}).width,) == (1248,)
    assert (plan(request=REQUEST).width, plan(request=REQUEST).height) == (640, 512)  # a given size stays


def test_the_command_line_plans_with_the_checkpoint_metadata(tmp_path, monkeypatch):
    from tinybreaker_ext import cli
    from tinybreaker_ext import generation

    path = write_model(tmp_path / "tb.safetensors", tinybreaker_keys(1), METADATA)
    assert checkpoint_file_defaults(path).stages["refiner.steps"] == 20
    planned = []

    def fake_run_plan(files, plan, **kwargs):
        planned.append(plan)
        raise SystemExit(0)

    monkeypatch.setattr(generation, "run_plan", fake_run_plan)
    monkeypatch.setattr(generation, "check_files_for_plan", lambda files, plan: None)
    monkeypatch.setattr("tinybreaker_ext.memory_plan.plan_memory",
                        lambda *a, **k: type("M", (), {"message": "", "check": lambda self: None, "t5_mode": "cpu"})())
    monkeypatch.setattr("tinybreaker_ext.model_files.resolve_cli_files", lambda *a, **k: type(
        "F", (), {"checkpoint": str(path), "t5": str(path), "t5_tokenizer": None, "clip_tokenizer": None,
                  "tokenizer_search": {}})())
    monkeypatch.setattr(cli, "_prompt_length_warnings", lambda files, plan: [])
    args = cli.build_parser().parse_args(["a cat --seed random", "--style", "none", "-o", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit):
        cli.run(args)
    assert (planned[0].refine.steps, planned[0].base.sampler, planned[0].width) == (20, "euler", 1248)
    assert planned[0].random_seed


def test_the_webui_plans_with_the_selected_checkpoint_metadata(make_tb_host):
    from tinybreaker_ext.webui import script_logic

    tb_host = make_tb_host("forge")
    folder = os.path.join(tb_host.models_path, "TinyBreaker")
    path = write_model(os.path.join(folder, "tb_with_defaults.safetensors"), tinybreaker_keys(1), METADATA)
    try:
        runs = {}
        plain = os.path.basename(tb_host.files["checkpoint"])
        for name in ("tb_with_defaults.safetensors", plain):
            p = tb_host.make_p(prompt="a cat", width=640, height=512, seed=3, batch_size=1)
            p.all_prompts, p.all_negative_prompts, p.all_seeds = ["a cat"], [""], [3]
            runs[name] = script_logic.process(p, *script_args(TinyBreakerParams(enabled=True, style="none",
                                                                                checkpoint=name)))
            script_logic.postprocess(p)
            assert runs[name].error is None, runs[name].error
        assert runs["tb_with_defaults.safetensors"].generation.refine.steps == 20
        assert runs[plain].generation.refine.steps == 11  # that file carries no generation defaults
    finally:
        os.remove(path)

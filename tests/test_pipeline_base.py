"""The stages the WebUI uses (encode → base → transcode) on tiny random models; no diffusers needed."""

import pytest
import torch

from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.pipeline import TinyBreakerPipeline
from tinybreaker_ext.plan import ImageRequest, make_plan
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas
from tinybreaker_ext.stage_params import StageParams
from tinybreaker_ext.text_encoding import PromptEmbeddingCache


def sigmas(stage):
    return compute_sigmas(pixart_sigmas(), sampler=stage.sampler, scheduler=stage.scheduler, steps=stage.steps,
                          steps_start=stage.steps_start)


@pytest.fixture(scope="module")
def pipeline(tiny_model_folder):
    _folder, paths = tiny_model_folder
    return TinyBreakerPipeline(paths["checkpoint1"], paths["t5"], tokenizer_path=paths["t5_tokenizer"])


def test_base_and_transcode_are_deterministic_per_seed(pipeline):
    stage = StageParams(sampler="uni_pc", scheduler="simple", steps=12, steps_start=2, cfg=3.4)
    first = pipeline.transcode(pipeline.base(["a red cat"], ["blurry"], stage, sigmas(stage), width=32, height=48, seeds=[5]))
    pipeline._base_cache = None
    again = pipeline.transcode(pipeline.base(["a red cat"], ["blurry"], stage, sigmas(stage), width=32, height=48, seeds=[5]))
    other = pipeline.transcode(pipeline.base(["a red cat"], ["blurry"], stage, sigmas(stage), width=32, height=48, seeds=[6]))
    assert first.shape == (1, 4, 6, 4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_prompt_changes_the_base_result(pipeline):
    stage = StageParams(sampler="euler", scheduler="normal", steps=4, steps_start=0, cfg=3.0)
    cat = pipeline.base(["a cat"], [""], stage, sigmas(stage), width=32, height=32, seeds=[1])
    dog = pipeline.base(["a dog on grass"], [""], stage, sigmas(stage), width=32, height=32, seeds=[1])
    assert not torch.allclose(cat, dog)


def test_changing_only_the_refiner_reuses_the_cached_base(pipeline, monkeypatch):
    pipeline._base_cache = None
    stage = StageParams(sampler="euler", scheduler="normal", steps=4, steps_start=1, cfg=3.0)
    first = pipeline.base(["a cat"], [""], stage, sigmas(stage), width=32, height=32, seeds=[1])
    calls = []
    monkeypatch.setattr(pipeline, "encode", lambda *a, **k: calls.append(a) or torch.zeros(1, 77, 32))
    again = pipeline.base(["a cat"], [""], stage, sigmas(stage), width=32, height=32, seeds=[1])
    assert torch.equal(first, again) and calls == []
    pipeline.base(["a cat"], [""], stage.copy(cfg=4.0), sigmas(stage), width=32, height=32, seeds=[1])
    assert calls, "a changed base parameter must run the base stage again"


def test_unchanged_prompt_never_runs_t5_again(pipeline):
    pipeline.prompt_cache = PromptEmbeddingCache()
    encoder = pipeline.t5("cpu")
    runs = []
    original = encoder.encode
    encoder.encode = lambda ids: runs.append(ids.shape) or original(ids)
    a = pipeline.encode("a red cube", t5_mode="cpu")
    b = pipeline.encode("a red cube", t5_mode="cpu")
    assert torch.equal(a, b) and len(runs) == 1


def test_cancel_from_the_callback_stops_between_steps(pipeline):
    from tinybreaker_ext.errors import Cancelled

    stage = StageParams(sampler="dpmpp_2m", scheduler="karras", steps=8, steps_start=0, cfg=3.0)
    seen = []

    def stop_after_two(step, total, x, denoised):
        seen.append(step)
        if step == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        pipeline.base(["a cat"], [""], stage, sigmas(stage), width=32, height=32, seeds=[1], callback=stop_after_two)
    assert seen == [0, 1]
    assert pipeline.last_denoised.shape == (1, 4, 4, 4)


def test_style_and_inline_parameters_resolve_in_the_reference_order():
    plan = make_plan(TinyBreakerParams(enabled=True), ImageRequest(
        "a cat --style COMIC --cfg-shift 2 --detail-level high", seed=11), StyleLibrary.load_builtin())
    assert plan.params.style == "COMIC"
    assert plan.base.sampler == "deis" and plan.base.scheduler == "sgm_uniform"
    assert plan.base.cfg == pytest.approx(5.2 + 0.4)
    assert plan.refine.steps_nfactor == 1
    assert plan.seed == 11 and plan.base.noise_seed == 11


def test_auto_t5_mode_streams_on_cuda_unless_the_placement_keeps_models_resident(pipeline, monkeypatch):
    import tinybreaker_ext.pipeline as pipeline_module
    from tinybreaker_ext.placement import MovePlacement

    chosen = []
    monkeypatch.setattr(pipeline_module, "choose_mode", lambda mode, device, size: chosen.append(mode) or "cpu")
    monkeypatch.setattr(pipeline, "device", torch.device("cuda"))
    offload, resident = MovePlacement("cpu", "offload"), MovePlacement("cpu", "gpu")
    pipeline.t5("auto", offload)
    pipeline.t5("auto", resident)
    pipeline.t5("gpu", offload)
    assert chosen == ["stream", "auto", "gpu"]


def test_a_sampling_run_projects_the_caption_once(pipeline):
    """A base stage of several steps computes the caption projection and each block's keys and values once, not at
    every step (they depend on the caption alone)."""
    pixart = pipeline.pixart
    calls = {"forwards": 0, "keys_values": 0, "caption": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    handles = [pixart.register_forward_hook(counter("forwards")),
               pixart.y_embedder.y_proj.register_forward_hook(counter("caption"))]
    handles += [block.cross_attn.kv_linear.register_forward_hook(counter("keys_values")) for block in pixart.blocks]
    stage = StageParams(sampler="euler", scheduler="simple", steps=4, steps_start=0, cfg=3.4)
    pipeline._base_cache = None
    try:
        pipeline.base(["a red fox"], ["blurry, a much longer negative prompt than the prompt"], stage, sigmas(stage),
                      width=64, height=64, seeds=[1, 2])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"forwards": 4, "keys_values": len(pixart.blocks), "caption": 1}

"""Memory hand-off per host (spec webui_hosts.md §4): A1111 moves its model out and back by hand when room is
short; Forge and reForge load our modules through their own manager with long-lived patchers."""

import gc
import weakref

import pytest
import torch

from builders.fake_hosts import CALLS, call_names, calls_named
from builders.fixtures_webui import FakeEngine
from tinybreaker_ext.params import TinyBreakerParams

ARGS = TinyBreakerParams(enabled=True, base_steps=5, refine_steps=2, refine_strength=0.3).as_args()
GIB = 1024**3


def fake_free_vram(monkeypatch, free_bytes):
    """torch.cuda.mem_get_info as a CUDA machine with ``free_bytes`` free would answer."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, 24 * GIB))


def memory_calls():
    keep = ("sd_models.send_model_to_cpu", "sd_models.send_model_to_device", "engine.base", "engine.transcode",
            "create_sampler")
    return [name for name in call_names() if name in keep]


@pytest.mark.parametrize("lowvram, free, moved", [
    (True, 20 * GIB, True),    # --lowvram/--medvram: always hand the device over
    (False, 1 * GIB, True),    # short of room next to the resident model
    (False, 20 * GIB, False),  # plenty of room: the model stays where it is
])
def test_a1111_moves_its_model_out_only_when_needed(make_tb_host, monkeypatch, lowvram, free, moved):
    env = make_tb_host("a1111", device="cuda")
    env.shared.sd_model.lowvram = lowvram
    fake_free_vram(monkeypatch, free)
    env.run(env.make_p(), ARGS)
    expected = ["engine.base", "engine.transcode", "create_sampler"]
    if moved:
        expected = ["sd_models.send_model_to_cpu", "engine.base", "engine.transcode",
                    "sd_models.send_model_to_device", "create_sampler"]
    assert memory_calls() == expected
    # Our modules go to the device for their stage and back to RAM after it (A1111 has no manager for them).
    moves = [entry[1:] for entry in calls_named("module.to")]
    assert moves == [("pixart", "cuda"), ("pixart", "cpu"), ("transcoder", "cuda"), ("transcoder", "cpu")]
    assert "devices.without_autocast" in call_names()  # T5 never runs under the host's fp16 autocast


def test_a1111_on_cpu_touches_nothing(make_tb_host, monkeypatch):
    env = make_tb_host("a1111", device="cpu")
    env.shared.sd_model.lowvram = True

    def no_cuda(device=None):
        raise AssertionError("no CUDA query on a CPU host")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_cuda)
    env.run(env.make_p(), ARGS)
    assert memory_calls() == ["engine.base", "engine.transcode", "create_sampler"]


def test_a1111_brings_its_model_back_when_our_stage_fails(make_tb_host, monkeypatch):
    env = make_tb_host("a1111", device="cuda")
    fake_free_vram(monkeypatch, 0)

    def broken_base(*args, **kwargs):
        raise RuntimeError("out of memory")

    env.engine.base = broken_base
    with pytest.raises(RuntimeError, match="out of memory"):
        env.run(env.make_p(), ARGS)
    assert memory_calls() == ["sd_models.send_model_to_cpu", "sd_models.send_model_to_device"]


def managed(patcher):
    """The module a patcher manages (reForge's adapter hands the patcher a plain container around it)."""
    model = patcher.model
    return getattr(model, "inner", model)


@pytest.mark.parametrize("host, load_call", [("forge", "memory_management.load_models_gpu"),
                                             ("reforge", "model_management.load_models_gpu")])
def test_forge_hosts_load_our_modules_through_their_manager(make_tb_host, host, load_call):
    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    created = calls_named("ModelPatcher")
    assert [managed(entry[1]) for entry in created] == [env.engine.pixart, env.engine.transcoder]
    for _name, patcher, _model, load_device, offload_device in created:
        assert (load_device, offload_device) == (torch.device("cuda"), torch.device("cpu"))
    loads = calls_named(load_call)
    assert [entry[1] for entry in loads] == [[created[0][1]], [created[1][1]]]
    assert all(entry[2] > 0 for entry in loads)  # room for activations is asked for
    if host == "reforge":
        assert all(entry[3] is True for entry in loads)  # force_full_load: plain modules can't be split there
    free_calls = calls_named(load_call.split(".")[0] + ".free_memory")
    assert [entry[2] for entry in free_calls] == ["cuda"] and free_calls[0][1] > 4096  # make_room before T5
    assert "sd_models.send_model_to_cpu" not in call_names()  # the host reloads its UNet itself
    # Bare parameters the host's swap path leaves behind still reach the device.
    assert ("module.to", "pixart", "cuda") in CALLS and ("module.to", "transcoder", "cuda") in CALLS


@pytest.mark.parametrize("host, load_call", [("forge", "memory_management.load_models_gpu"),
                                             ("reforge", "model_management.load_models_gpu")])
def test_forge_hosts_reuse_the_same_patcher_and_keep_it_alive(make_tb_host, host, load_call):
    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    first = [entry[1][0] for entry in calls_named(load_call)]
    alive = [weakref.ref(patcher) for patcher in first]
    del first
    CALLS.clear()
    gc.collect()
    assert all(ref() is not None for ref in alive)  # we hold them: the managers alone would drop them

    env.state.begin()
    env.run(env.make_p(seed=5), ARGS)
    assert calls_named("ModelPatcher") == []
    assert [entry[1][0] for entry in calls_named(load_call)] == [ref() for ref in alive]


@pytest.mark.parametrize("host", ["forge", "reforge"])
def test_forge_hosts_let_a_replaced_engines_modules_go(make_tb_host, host):
    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    old_modules = [weakref.ref(env.engine.pixart), weakref.ref(env.engine.transcoder)]

    env.engine = FakeEngine()  # another checkpoint selected: the core built a new pipeline
    CALLS.clear()
    env.state.begin()
    env.run(env.make_p(), ARGS)
    CALLS.clear()
    gc.collect()
    assert all(ref() is None for ref in old_modules)


def test_reforge_patcher_can_write_device_onto_what_it_manages(make_tb_host):
    """reForge's ModelPatcher sets ``model.device``; PixArtSigma's ``device`` is a read-only property."""
    from tinybreaker_ext.models.pixart import PixArtConfig, PixArtSigma
    from tinybreaker_ext.webui.host import get_host

    env = make_tb_host("reforge")
    config = PixArtConfig(hidden_size=72, depth=1, num_heads=1, patch_size=2, in_channels=4, out_channels=8,
                          caption_dim=8, mlp_hidden=144)
    module = PixArtSigma(config)
    with get_host().placement().use(module) as used:
        assert used is module

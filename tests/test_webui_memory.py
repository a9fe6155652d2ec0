"""Memory hand-off per host: A1111 moves its model out and back by hand when room is short; Forge, Neo, reForge and
Classic load our modules through their own manager with patchers that live as long as the modules."""

import gc
import weakref

import pytest
import torch

from builders.fake_hosts import BACKEND_HOSTS, CALLS, MANAGED_HOSTS, call_names, calls_named
from builders.fixtures_webui import FakeEngine, RecordingModule
from builders.params import script_args
from tinybreaker_ext.params import TinyBreakerParams

ARGS = script_args(TinyBreakerParams(enabled=True, base_steps=5, refine_steps=2, refine_strength=0.3))
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
    (False, 2 * GIB, True),    # short of room next to the resident model (enough for our stage once it left)
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
    fake_free_vram(monkeypatch, 2 * GIB)

    def broken_base(*args, **kwargs):
        raise RuntimeError("out of memory")

    env.engine.base = broken_base
    with pytest.raises(RuntimeError, match="out of memory"):
        env.run(env.make_p(), ARGS)
    assert memory_calls() == ["sd_models.send_model_to_cpu", "sd_models.send_model_to_device"]


def managed(patcher):
    """The module a patcher manages (the adapter hands the patcher a plain container around it)."""
    model = patcher.model
    return getattr(model, "inner", model)


LOAD_CALLS = {host: ("memory_management" if host in BACKEND_HOSTS else "model_management") + ".load_models_gpu"
              for host in MANAGED_HOSTS}


@pytest.mark.parametrize("host", MANAGED_HOSTS)
def test_managed_hosts_load_our_modules_through_their_manager(make_tb_host, host):
    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    created = calls_named("ModelPatcher")
    assert [managed(entry[1]) for entry in created] == [env.engine.pixart, env.engine.transcoder]
    for _name, patcher, _model, load_device, offload_device in created:
        assert (load_device, offload_device) == (torch.device("cuda"), torch.device("cpu"))
    loads = calls_named(LOAD_CALLS[host])
    assert [entry[1] for entry in loads] == [[created[0][1]], [created[1][1]]]
    assert all(entry[2] > 0 for entry in loads)  # room for activations is asked for
    if host in ("neo", "reforge"):  # their load_models_gpu takes force_full_load: plain modules can't be split
        assert all(entry[3] is True for entry in loads)
    free_calls = calls_named(LOAD_CALLS[host].split(".")[0] + ".free_memory")
    assert [entry[2] for entry in free_calls] == ["cuda"] and free_calls[0][1] > 4096  # make_room before T5
    assert "sd_models.send_model_to_cpu" not in call_names()  # the host reloads its UNet itself
    # Whatever a partial load left in RAM (bare parameters, layers) still reaches the device.
    assert ("module.to", "pixart", "cuda") in CALLS and ("module.to", "transcoder", "cuda") in CALLS


@pytest.mark.parametrize("host", MANAGED_HOSTS)
def test_managed_hosts_reuse_the_same_patcher_and_keep_it_alive(make_tb_host, host):
    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    first = [entry[1][0] for entry in calls_named(LOAD_CALLS[host])]
    alive = [weakref.ref(patcher) for patcher in first]
    del first
    CALLS.clear()
    gc.collect()
    assert all(ref() is not None for ref in alive)  # we hold them: Neo's and reForge's managers alone would not

    env.state.begin()
    env.run(env.make_p(seed=5), ARGS)
    assert calls_named("ModelPatcher") == []
    assert [entry[1][0] for entry in calls_named(LOAD_CALLS[host])] == [ref() for ref in alive]


@pytest.mark.parametrize("host", MANAGED_HOSTS)
def test_managed_hosts_let_a_replaced_engines_modules_go(make_tb_host, host):
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


@pytest.mark.parametrize("host", ["neo", "reforge"])
def test_no_loaded_module_outlives_its_patcher_after_a_second_placement(make_tb_host, host):
    """Neo's bug: the Tiny Upscaler's own placement dropped the patchers of the modules it did not use while they
    stayed loaded; a weak-reference manager can then never evict them ("Memory Leak with model …")."""
    from tinybreaker_ext.webui.host import get_host

    env = make_tb_host(host, device="cuda")
    env.run(env.make_p(), ARGS)
    extra = RecordingModule("upscaler_vae")
    with get_host().placement().use(extra):  # what webui/upscale.py does for the upscaler's VAE
        pass
    del extra
    gc.collect()
    manager_module = "backend.memory_management" if host in BACKEND_HOSTS else "ldm_patched.modules.model_management"
    assert env.tree[manager_module].weak_manager.leaks() == []
    assert len(env.tree[manager_module].weak_manager.loaded) == 3


def test_patchers_may_write_device_onto_what_they_manage(make_tb_host):
    """The ComfyUI-era ModelPatcher sets ``model.device``; PixArtSigma's ``device`` is a read-only property."""
    from tinybreaker_ext.models.pixart import PixArtConfig, PixArtSigma
    from tinybreaker_ext.webui.host import get_host

    for host in MANAGED_HOSTS:
        make_tb_host(host)
        config = PixArtConfig(hidden_size=72, depth=1, num_heads=1, patch_size=2, in_channels=4, out_channels=8,
                              caption_dim=8, mlp_hidden=144)
        module = PixArtSigma(config)
        with get_host().placement().use(module) as used:
            assert used is module


@pytest.mark.parametrize("host, name", [("forge", "forge"), ("neo", "neo"), ("reforge", "reforge"),
                                        ("classic", "classic"), ("a1111", "a1111")])
def test_the_adapter_is_chosen_by_capability_and_named_by_the_hosts_version(make_tb_host, host, name):
    from tinybreaker_ext.webui.host import get_host

    make_tb_host(host)
    assert get_host().name == name


# --- the preflight: free memory from the host, the command line's estimate, a 422 naming the field ---------------

def test_managed_hosts_read_free_memory_from_their_manager_and_count_what_it_would_evict(make_tb_host, monkeypatch):
    from types import SimpleNamespace

    from builders import fake_hosts
    from tinybreaker_ext.webui.host import get_host

    for host, manager in (("forge", "backend.memory_management"), ("reforge", "ldm_patched.modules.model_management")):
        env = make_tb_host(host, device="cuda")
        monkeypatch.setitem(fake_hosts.FREE_DEVICE_BYTES, "value", 1000)
        unet = torch.nn.Linear(4, 4, device="meta")  # 20 float32 values on the stand-in device: 80 bytes
        loaded = env.tree[manager].current_loaded_models
        loaded += [SimpleNamespace(model=SimpleNamespace(model=unet)),  # a loaded model: ModelPatcher.model
                   SimpleNamespace(model=SimpleNamespace(model=unet)),  # the same weights twice count once
                   SimpleNamespace(model=None)]  # Neo: a patcher only weakly referenced, already gone
        free_ram, free_device = get_host().free_memory(torch.device("meta"))
        assert free_device == 1000 + 80 and free_ram > 0
        assert ("get_free_memory", "meta") in CALLS
        assert get_host().free_memory(torch.device("cpu"))[1] is None  # on a CPU everything is RAM


def test_a1111_counts_its_model_as_free_only_when_it_will_move_it_out(make_tb_host, monkeypatch):
    from types import SimpleNamespace

    from tinybreaker_ext.webui.host import get_host

    class OnCuda:
        """A half-precision tensor on the CUDA device this machine lacks (only what the reading asks)."""
        device = torch.device("cuda")

        def numel(self):
            return 1000

        def element_size(self):
            return 2

    make_tb_host("a1111", device="cuda")
    model = SimpleNamespace(parameters=lambda: [OnCuda(), torch.zeros(7)], buffers=lambda: [OnCuda()],
                            lowvram=False)
    fake_free_vram(monkeypatch, 20 * GIB)
    assert get_host().free_memory(torch.device("cuda"), model)[1] == 20 * GIB  # plenty of room: it stays
    assert get_host().free_memory(torch.device("cpu"), model)[1] is None  # on a CPU everything is RAM
    model.lowvram = True  # --lowvram/--medvram: it always leaves for our stage, its CUDA bytes with it
    assert get_host().free_memory(torch.device("cuda"), model)[1] == 20 * GIB + 4000
    model.lowvram = False
    fake_free_vram(monkeypatch, 2 * GIB)  # short of room next to it: it leaves
    assert get_host().free_memory(torch.device("cuda"), model)[1] == 2 * GIB + 4000
    assert get_host().free_memory(torch.device("cuda"))[1] == 2 * GIB  # no job (the hint, the API): as reported


def _device_need(env, mode):
    from tinybreaker_ext.webui import run_plan
    from tinybreaker_ext.webui.host import get_host

    plan = run_plan.plan_for(get_host(), env.files["checkpoint"], env.files["t5"], mode)
    return plan.device_peak


@pytest.mark.parametrize("host", ["forge", "reforge"])
def test_a_placement_that_cannot_fit_is_a_422_naming_t5_mode_before_anything_loads(make_tb_host, monkeypatch,
                                                                                   host):
    from builders import fake_hosts
    from tinybreaker_ext.memory_plan import GB

    env = make_tb_host(host, device="cuda")
    stream_need = _device_need(env, "stream")
    assert _device_need(env, "gpu") > stream_need
    monkeypatch.setitem(fake_hosts.FREE_DEVICE_BYTES, "value", stream_need)
    args = script_args(TinyBreakerParams(enabled=True, base_steps=5, t5_mode="gpu"))
    with pytest.raises(Exception) as raised:
        env.run(env.make_p(), args)
    assert getattr(raised.value, "status_code", None) == 422
    detail = raised.value.detail
    assert detail.startswith("TinyBreaker parameter 't5_mode': not enough memory for T5 gpu: needs ")
    assert detail.endswith(f"free CUDA {stream_need / GB:.1f} GB; use stream")
    assert "engine.base" not in call_names() and calls_named("ModelPatcher") == []

    CALLS.clear()
    env.state.begin()
    env.run(env.make_p(), ARGS)  # auto: resolved to stream by the same estimate, and it fits
    assert env.engine.base_calls[-1]["t5_mode"] == "stream"


def test_an_auto_field_follows_the_placement_setting_through_the_same_check(make_tb_host, monkeypatch):
    """Settings → TinyBreaker → T5 placement decides when the field says auto: its gpu is checked like the field's."""
    from builders import fake_hosts

    env = make_tb_host("neo", device="cuda")
    monkeypatch.setitem(fake_hosts.FREE_DEVICE_BYTES, "value", _device_need(env, "stream"))
    env.shared.opts.data["tinybreaker_t5_mode"] = "gpu"
    with pytest.raises(Exception) as raised:
        env.run(env.make_p(), ARGS)
    assert raised.value.status_code == 422 and "not enough memory for T5 gpu" in raised.value.detail
    assert raised.value.detail.endswith("use stream")
    env.shared.opts.data["tinybreaker_t5_mode"] = "stream"
    env.state.begin()
    env.run(env.make_p(), ARGS)
    assert env.engine.base_calls[-1]["t5_mode"] == "stream"


def test_short_ram_is_a_422_naming_the_t5_file_with_a_smaller_one_that_would_fit(make_tb_host, monkeypatch):
    import tinybreaker_ext.memory_plan as memory_plan
    import tinybreaker_ext.models.t5_policy as t5_policy
    from tinybreaker_ext.memory_plan import T5Footprint

    env = make_tb_host("a1111", device="cpu")
    full = T5Footprint(stored_bytes=4_900_000_000, largest_weight_numel=10240 * 4096,
                       largest_sublayer_stored_bytes=3 * 10240 * 4096 + 4 * 4096)
    monkeypatch.setattr(memory_plan, "t5_footprint", lambda path: full)  # a full-size fp8 T5-XXL's header
    monkeypatch.setattr(t5_policy, "available_ram_bytes", lambda: 5 * 10**9)
    with pytest.raises(Exception) as raised:
        env.run(env.make_p(), ARGS)
    assert raised.value.status_code == 422
    assert raised.value.detail.startswith("TinyBreaker parameter 't5_file': not enough memory for T5 cpu: ")
    assert "use a Q" in raised.value.detail and "engine.base" not in call_names()


def test_the_webui_and_the_command_line_give_the_same_verdict(make_tb_host, tiny_model_folder, monkeypatch, capsys):
    """Same files, same free RAM, same (CPU) device: the same estimate line when it fits, and the same refusal —
    exit 5 on the command line, a 422 in the WebUI — one byte short of it."""
    import tinybreaker_ext.generation as generation
    import tinybreaker_ext.memory_plan as memory_plan
    import tinybreaker_ext.models.t5_policy as t5_policy
    import tinybreaker_ext.pipeline as pipeline
    from tinybreaker_ext import cli
    from tinybreaker_ext.webui import run_plan

    env = make_tb_host("a1111", device="cpu")
    _folder, tiny = tiny_model_folder
    monkeypatch.setattr(pipeline, "_pipelines", {})  # no models of an earlier test held in RAM
    argv = ["a cat", "--device", "cpu", "--checkpoint", env.files["checkpoint"], "--t5", env.files["t5"],
            "--t5-tokenizer", tiny["t5_tokenizer"], "--clip-tokenizer", tiny["clip_tokenizer"]]

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "run_plan", stop)
    needed = memory_plan.plan_memory(env.files["t5"], env.files["checkpoint"], device="cpu",
                                     model_dtype=torch.float32, free_ram=10**12).ram_peak
    for free in (needed, needed - 1):
        monkeypatch.setattr(memory_plan, "available_ram_bytes", lambda: free)  # the command line's reading
        monkeypatch.setattr(t5_policy, "available_ram_bytes", lambda: free)  # the host's (A1111: the system's)
        code = cli.main(argv)
        cli_lines = capsys.readouterr().err.splitlines()
        if free == needed:
            assert code == cli.EXIT_INTERRUPTED  # past the preflight
            (line,) = [line for line in cli_lines if line.startswith("memory: ")]
            assert run_plan.hint("", "", "auto") == line
            env.run(env.make_p(), ARGS)
            assert env.engine.base_calls[-1]["t5_mode"] == "cpu"
        else:
            assert code == cli.EXIT_MEMORY
            assert cli_lines[-1].startswith("tinybreaker: error: not enough memory for T5 cpu")
            with pytest.raises(Exception) as raised:
                env.state.begin()
                env.run(env.make_p(), ARGS)
            assert raised.value.status_code == 422
            assert raised.value.detail == "TinyBreaker parameter 't5_file': " + \
                cli_lines[-1].removeprefix("tinybreaker: error: ")
            assert run_plan.hint("", "", "auto") == "memory: " + cli_lines[-1].removeprefix("tinybreaker: error: ")

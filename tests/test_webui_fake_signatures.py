"""The host stand-ins keep the real hosts' signatures, and the host contracts cover every host name our adapters use.

tests/fixtures/host_contracts.json holds the signatures read from real host trees (A1111 1.10.1, Forge, Forge Neo,
Forge Classic, reForge; commits inside) by tests/builders/host_contracts.py. These tests need no host tree: every
stand-in is compared with the fixture in every run, and the adapters' host calls are checked against its names.
"""

import ast
import inspect
import json
import os

import pytest

from builders import fake_host_processing as processing
from builders import fake_host_sampling as sampling
from builders import fake_host_ui as ui
from builders import fake_hosts
from builders.host_contracts import FIXTURE, HOSTS, _names_in, adapter_host_names

with open(FIXTURE, encoding="utf-8") as _file:
    CONTRACTS = json.load(_file)["hosts"]

ALL = HOSTS
FORGE_FAMILY = ("forge", "neo", "classic", "reforge")
UI_COMMON = ui.ui_common_module(ui.ui_components_module())
CALLBACKS = ui.script_callbacks_module()


class BuiltOnUse:
    """A stand-in that exists only once built (the UI components subclass the installed gradio's)."""

    def __init__(self, make):
        self.make = make


def _ui_component(name: str) -> BuiltOnUse:
    return BuiltOnUse(lambda: getattr(ui.ui_components_module(), name).__init__)


# (stand-in, hosts it must match, contract name). Hosts left out differ from the stand-in: see the comments.
_CONDITIONING = sampling.conditioning_functions(sampling.SamplingEnv("stand-in"))
CASES = [
    (processing.create_sampler, ("a1111", "forge", "neo", "classic"),  # reForge adds scheduler=None
     "modules.sd_samplers.create_sampler"),
    (processing.FakeSampler.sample, ALL, "modules.sd_samplers_kdiffusion.KDiffusionSampler.sample"),
    (processing.FakeSampler.sample_img2img, ALL, "modules.sd_samplers_kdiffusion.KDiffusionSampler.sample_img2img"),
    (processing.ImageRNG.__init__, ALL, "modules.rng.ImageRNG"),
    (processing.decode_latent_batch, ALL, "modules.processing.decode_latent_batch"),
    (sampling.decode_latent_batch, ALL, "modules.processing.decode_latent_batch"),
    (processing.StableDiffusionProcessingTxt2Img.sample, ALL,
     "modules.processing.StableDiffusionProcessingTxt2Img.sample"),
    (processing.StableDiffusionProcessingTxt2Img.sample_hr_pass, ALL,
     "modules.processing.StableDiffusionProcessingTxt2Img.sample_hr_pass"),
    (processing.StableDiffusionProcessingTxt2Img.txt2img_image_conditioning, ALL,
     "modules.processing.StableDiffusionProcessingTxt2Img.txt2img_image_conditioning"),
    (processing.StableDiffusionProcessingTxt2Img.get_token_merging_ratio, ALL,
     "modules.processing.StableDiffusionProcessingTxt2Img.get_token_merging_ratio"),
    (processing.StableDiffusionProcessingTxt2Img.init, ALL,
     "modules.processing.StableDiffusionProcessingTxt2Img.init"),
    (processing.ScriptRunner.process_before_every_sampling, ALL,
     "modules.scripts.ScriptRunner.process_before_every_sampling"),
    (processing.ForgeObjects.__init__, ("forge", "neo"), "backend.diffusion_engine.base.ForgeObjects"),
    (processing.ForgeObjects.shallow_copy, ("forge", "neo"), "backend.diffusion_engine.base.ForgeObjects.shallow_copy"),
    (sampling.SdConditioning.__init__, ("a1111", "classic", "reforge"),  # Forge, Neo add distilled_cfg_scale=None
     "modules.prompt_parser.SdConditioning"),
    (sampling.ComposableScheduledPromptConditioning.__init__, ALL,
     "modules.prompt_parser.ComposableScheduledPromptConditioning"),
    (sampling.MulticondLearnedConditioning.__init__, ALL, "modules.prompt_parser.MulticondLearnedConditioning"),
    (_CONDITIONING[0], ALL, "modules.prompt_parser.get_learned_conditioning"),
    (_CONDITIONING[1], ALL, "modules.prompt_parser.get_multicond_learned_conditioning"),
    (sampling.reconstruct_cond_batch, ALL, "modules.prompt_parser.reconstruct_cond_batch"),
    (sampling.reconstruct_multicond_batch, ALL, "modules.prompt_parser.reconstruct_multicond_batch"),
    (sampling.FakeCFGDenoiser.forward, ("a1111", "forge", "classic"),  # Neo, reForge add **kwargs
     "modules.sd_samplers_cfg_denoiser.CFGDenoiser.forward"),
    (sampling.store_latent, ALL, "modules.sd_samplers_common.store_latent"),
    (sampling.FakeKDiffusionSampler.initialize, ALL, "modules.sd_samplers_kdiffusion.KDiffusionSampler.initialize"),
    (fake_hosts.send_model_to_cpu, ("a1111",), "modules.sd_models.send_model_to_cpu"),
    (fake_hosts.send_model_to_device, ("a1111",), "modules.sd_models.send_model_to_device"),
    (fake_hosts.apply_token_merging, ALL, "modules.sd_models.apply_token_merging"),
    (fake_hosts.Upscaler.upscale, ALL, "modules.upscaler.Upscaler.upscale"),
    (fake_hosts.UpscalerData.__init__, ("a1111",),  # Forge, Classic, reForge add sha256=None; Neo differs more
     "modules.upscaler.UpscalerData"),
    (fake_hosts.OptionInfo.__init__, ALL, "modules.shared.OptionInfo"),
    (fake_hosts.Options.add_option, ALL, "modules.shared.opts.add_option"),
    (fake_hosts.State.begin, ALL, "modules.shared_state.State.begin"),
    (fake_hosts.State.skip, ALL, "modules.shared_state.State.skip"),
    (fake_hosts.State.interrupt, ALL, "modules.shared_state.State.interrupt"),
    (fake_hosts.State.nextjob, ALL, "modules.shared.state.nextjob"),
    (fake_hosts.State.assign_current_image, ALL, "modules.shared.state.assign_current_image"),
    (fake_hosts.TotalTQDM.updateTotal, ALL, "modules.shared.total_tqdm.updateTotal"),
    (fake_hosts.TotalTQDM.update, ALL, "modules.shared.total_tqdm.update"),
    (fake_hosts.TotalTQDM.clear, ALL, "modules.shared_total_tqdm.TotalTQDM.clear"),
    (fake_hosts.ForgeModelPatcher.__init__, ("forge",), "backend.patcher.base.ModelPatcher.__init__"),
    (fake_hosts.forge_load_models_gpu, ("forge",), "backend.memory_management.load_models_gpu"),
    (fake_hosts.forge_free_memory, ("forge",), "backend.memory_management.free_memory"),
    (fake_hosts.get_free_memory, ("forge", "neo"), "backend.memory_management.get_free_memory"),
    (fake_hosts.get_free_memory, ("classic", "reforge"), "ldm_patched.modules.model_management.get_free_memory"),
    (fake_hosts.ReForgeModelPatcher.__init__, ("reforge",), "ldm_patched.modules.model_patcher.ModelPatcher.__init__"),
    (fake_hosts.reforge_load_models_gpu, ("reforge",), "ldm_patched.modules.model_management.load_models_gpu"),
    (fake_hosts.reforge_free_memory, ("reforge", "classic"), "ldm_patched.modules.model_management.free_memory"),
    (fake_hosts.NeoModelPatcher.__init__, ("neo",), "backend.patcher.base.ModelPatcher.__init__"),
    (fake_hosts.neo_load_models_gpu, ("neo",), "backend.memory_management.load_models_gpu"),
    (fake_hosts.neo_free_memory, ("neo",), "backend.memory_management.free_memory"),
    (fake_hosts.ClassicModelPatcher.__init__, ("classic",), "ldm_patched.modules.model_patcher.ModelPatcher.__init__"),
    (fake_hosts.classic_load_models_gpu, ("classic",), "ldm_patched.modules.model_management.load_models_gpu"),
    (UI_COMMON.create_refresh_button, ALL, "modules.ui_common.create_refresh_button"),
    (_ui_component("InputAccordion"), ("a1111", "classic", "reforge"),  # Forge, Neo: a function (value=None, **kw)
     "modules.ui_components.InputAccordion"),
    (CALLBACKS.clear_callbacks, ALL, "modules.script_callbacks.clear_callbacks"),
    (CALLBACKS.app_started_callback, ALL, "modules.script_callbacks.app_started_callback"),
    (CALLBACKS.before_ui_callback, ALL, "modules.script_callbacks.before_ui_callback"),
    (CALLBACKS.ui_settings_callback, ALL, "modules.script_callbacks.ui_settings_callback"),
] + [(getattr(CALLBACKS, f"on_{category}"), ("a1111", "forge", "neo", "reforge"),  # Classic: no name keyword
      f"modules.script_callbacks.on_{category}")
     for category in ("app_started", "ui_settings", "before_ui", "script_unloaded", "model_loaded", "ui_tabs",
                      "infotext_pasted")
     ] + [(getattr(ui.Script, name), ALL if name != "describe" else ("a1111", "forge", "neo", "reforge"),  # Classic
           # removed Script.describe
           f"modules.scripts.Script.{name}")
          for name in ("title", "ui", "show", "run", "setup", "before_process", "process", "before_process_batch",
                       "after_extra_networks_activate", "process_before_every_sampling", "process_batch",
                       "postprocess_batch", "post_sample", "postprocess_image", "postprocess", "before_component",
                       "after_component", "describe", "elem_id", "before_hr")]
CASES = [(fake, host, name) for fake, hosts, name in CASES for host in hosts]


def fake_parameters(function) -> list[list]:
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional", inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "**"}
    result = []
    for parameter in inspect.signature(function).parameters.values():
        default = None if parameter.default is inspect.Parameter.empty else ast.unparse(
            ast.parse(repr(parameter.default), mode="eval").body)
        result.append([parameter.name, kinds[parameter.kind], default])
    return result


@pytest.mark.parametrize("fake, host, name", CASES, ids=[f"{host}:{name}" for _, host, name in CASES])
def test_stand_in_matches_the_host(fake, host, name):
    entry = CONTRACTS[host]["contracts"].get(name)
    assert entry is not None, f"no contract for {name} in {host}: regenerate tests/fixtures/host_contracts.json"
    if isinstance(fake, BuiltOnUse):
        # These stand-ins subclass gradio's components; the stacks with gradio (a1111, forge, neo) check them.
        pytest.importorskip("gradio", reason="the UI component stand-ins need gradio")
        fake = fake.make()
    assert fake_parameters(fake) == entry["params"], f"{host} defines it at {entry['file']}:{entry['qualname']}"


def test_the_fixture_covers_every_host_name_the_adapters_use():
    missing = sorted(adapter_host_names() - set(CONTRACTS["a1111"]["contracts"]))
    assert not missing, f"adapters use host names without a contract (run tests/builders/host_contracts.py): {missing}"


def test_every_contract_is_found_in_some_host():
    names = set(CONTRACTS["a1111"]["contracts"])
    assert all(set(CONTRACTS[host]["contracts"]) == names for host in HOSTS)
    assert [name for name in sorted(names) if all(CONTRACTS[h]["contracts"][name] is None for h in HOSTS)] == []


def test_the_fixture_names_each_hosts_commit():
    assert sorted(CONTRACTS) == sorted(HOSTS)
    for host in HOSTS:
        commit = CONTRACTS[host]["commit"]
        assert len(commit) == 40 and int(commit, 16) >= 0, host


def test_the_scan_follows_imports_aliases_and_getattr():
    source = ("from modules import shared\nfrom backend.patcher.base import ModelPatcher\n"
              "def f():\n    state = shared.state\n    state.nextjob()\n    getattr(shared.opts, 'live')\n"
              "    ModelPatcher(1)\n    p.sampler.sample(1)\n")
    assert _names_in(ast.parse(source)) == {
        "modules.shared.state.nextjob", "modules.shared.opts.live", "backend.patcher.base.ModelPatcher",
        "modules.shared.state", "modules.shared.opts"}


def test_every_hook_our_script_defines_is_a_hook_of_every_host():
    """scripts/tinybreaker.py's methods are called by the hosts: each must be a Script hook all five define."""
    import re

    with open(os.path.join(os.path.dirname(__file__), "..", "scripts", "tinybreaker.py"), encoding="utf-8") as file:
        defined = set(re.findall(r"^    def (\w+)\(", file.read(), re.MULTILINE)) - {"__init__"}
    for name in defined:
        for host in HOSTS:
            assert CONTRACTS[host]["contracts"].get(f"modules.scripts.Script.{name}") is not None, (host, name)

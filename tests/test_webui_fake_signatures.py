"""The host stand-ins keep the real hosts' signatures: each is compared with the definition parsed (never
imported) from a checked-out host tree. Skipped where no trees are checked out (set TINYBREAKER_HOST_TREES to a
folder holding a1111/, forge/, reforge/)."""

import ast
import inspect
import os

import pytest

from builders import fake_host_processing as processing
from builders import fake_host_ui as ui
from builders import fake_hosts

TREES = os.environ.get("TINYBREAKER_HOST_TREES", "/work/hosts")

# (fake, host, file in the tree, qualified name there)
CASES = [
    (processing.create_sampler, "a1111", "modules/sd_samplers.py", "create_sampler"),
    (processing.FakeSampler.sample_img2img, "a1111", "modules/sd_samplers_kdiffusion.py",
     "KDiffusionSampler.sample_img2img"),
    (processing.FakeSampler.sample_img2img, "forge", "modules/sd_samplers_kdiffusion.py",
     "KDiffusionSampler.sample_img2img"),
    (processing.FakeSampler.sample_img2img, "reforge", "modules/sd_samplers_kdiffusion.py",
     "KDiffusionSampler.sample_img2img"),
    (processing.ImageRNG.__init__, "a1111", "modules/rng.py", "ImageRNG.__init__"),
    (processing.decode_latent_batch, "a1111", "modules/processing.py", "decode_latent_batch"),
    (processing.StableDiffusionProcessingTxt2Img.sample_hr_pass, "a1111", "modules/processing.py",
     "StableDiffusionProcessingTxt2Img.sample_hr_pass"),
    (processing.StableDiffusionProcessingTxt2Img.sample, "a1111", "modules/processing.py",
     "StableDiffusionProcessingTxt2Img.sample"),
    (processing.StableDiffusionProcessingTxt2Img.txt2img_image_conditioning, "a1111", "modules/processing.py",
     "StableDiffusionProcessing.txt2img_image_conditioning"),
    (processing.StableDiffusionProcessingTxt2Img.get_token_merging_ratio, "a1111", "modules/processing.py",
     "StableDiffusionProcessing.get_token_merging_ratio"),
    (processing.ScriptRunner.process_before_every_sampling, "a1111", "modules/scripts.py",
     "ScriptRunner.process_before_every_sampling"),
    (fake_hosts.send_model_to_cpu, "a1111", "modules/sd_models.py", "send_model_to_cpu"),
    (fake_hosts.send_model_to_device, "a1111", "modules/sd_models.py", "send_model_to_device"),
    (fake_hosts.apply_token_merging, "forge", "modules/sd_models.py", "apply_token_merging"),
    (fake_hosts.apply_token_merging, "reforge", "modules/sd_models.py", "apply_token_merging"),
    (fake_hosts.OptionInfo.__init__, "a1111", "modules/options.py", "OptionInfo.__init__"),
    (fake_hosts.ForgeModelPatcher.__init__, "forge", "backend/patcher/base.py", "ModelPatcher.__init__"),
    (fake_hosts.forge_load_models_gpu, "forge", "backend/memory_management.py", "load_models_gpu"),
    (fake_hosts.forge_free_memory, "forge", "backend/memory_management.py", "free_memory"),
    (fake_hosts.ReForgeModelPatcher.__init__, "reforge", "ldm_patched/modules/model_patcher.py",
     "ModelPatcher.__init__"),
    (fake_hosts.reforge_load_models_gpu, "reforge", "ldm_patched/modules/model_management.py", "load_models_gpu"),
    (fake_hosts.reforge_free_memory, "reforge", "ldm_patched/modules/model_management.py", "free_memory"),
    (fake_hosts.State.nextjob, "a1111", "modules/shared_state.py", "State.nextjob"),
    (fake_hosts.State.begin, "a1111", "modules/shared_state.py", "State.begin"),
    (fake_hosts.State.assign_current_image, "a1111", "modules/shared_state.py", "State.assign_current_image"),
    (processing.ForgeObjects.__init__, "forge", "backend/diffusion_engine/base.py", "ForgeObjects.__init__"),
] + [(getattr(ui.Script, name), "a1111", "modules/scripts.py", f"Script.{name}") for name in (
    "title", "ui", "show", "setup", "process", "process_before_every_sampling", "postprocess", "after_component",
    "elem_id", "before_hr")]


def parsed_parameters(path: str, qualified_name: str) -> list[tuple[str, str, str | None]]:
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    node = tree
    for part in qualified_name.split("."):
        node = next(child for child in ast.iter_child_nodes(node)
                    if isinstance(child, (ast.FunctionDef, ast.ClassDef)) and child.name == part)
    arguments = node.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + [ast.unparse(d) for d in arguments.defaults]
    result = [(arg.arg, "positional", default) for arg, default in zip(positional, defaults)]
    if arguments.vararg:
        result.append((arguments.vararg.arg, "*", None))
    result += [(arg.arg, "keyword", None if default is None else ast.unparse(default))
               for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults)]
    if arguments.kwarg:
        result.append((arguments.kwarg.arg, "**", None))
    return result


def fake_parameters(function) -> list[tuple[str, str, str | None]]:
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional", inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "**"}
    result = []
    for parameter in inspect.signature(function).parameters.values():
        default = None if parameter.default is inspect.Parameter.empty else ast.unparse(
            ast.parse(repr(parameter.default), mode="eval").body)
        result.append((parameter.name, kinds[parameter.kind], default))
    return result


@pytest.mark.parametrize("fake, host, relative_path, qualified_name", CASES,
                         ids=[f"{case[1]}:{case[3]}" for case in CASES])
def test_stand_in_matches_the_host(fake, host, relative_path, qualified_name):
    path = os.path.join(TREES, host, relative_path)
    if not os.path.isfile(path):
        pytest.skip(f"no {host} tree at {os.path.join(TREES, host)}")
    assert fake_parameters(fake) == parsed_parameters(path, qualified_name)

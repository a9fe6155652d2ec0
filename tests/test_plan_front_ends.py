"""The WebUI and the command line make the same plan from the same inputs: one prompt with inline arguments, the
same fields (accordion values / command-line options), size, seed and batch — through each front end's own
parsing (script args on a host stand-in; argparse on the command line)."""

import dataclasses

import pytest
import torch

from builders.params import script_args
from tinybreaker_ext import cli
from tinybreaker_ext.generation import plan_for
from tinybreaker_ext.params import TinyBreakerParams
from tinybreaker_ext.webui import script_logic

# (prompt, fields) — fields as the accordion / the API would set them; the command line gets them as options.
CASES = [
    ("a red fox in the snow", {}),
    ("a red fox --style COMIC", {}),
    ("a lighthouse --aspect 3:2 --portrait", {}),
    ("a lighthouse --a 16:9 --medium --seed 77", {}),
    ("a castle --detail-level 20", {}),
    ("a castle --d none", {"refine_steps": 5}),
    ("a castle --detail-level low --cfg-shift -3", {"style": "PAINTING"}),
    ("a robot --cfg-shift 2 --image-shift 4", {"cfg_shift": 5}),
    ("a robot --c 99", {}),
    ("portrait of a woman --style REALISTIC_WAIFU_Z --no glasses", {}),
    ("portrait of a woman --refine sharp eyes --no hat", {"style": "ULTRAPHOTO"}),
    ("a toy car --refine !a toy", {"style": "LITTLE_TOY"}),
    ("a forest --upscale on --upscale-noise high", {"upscale_by": 3.0}),
    ("a forest --upscale-noise -9", {"upscale": True}),
    ("a forest --upscale off", {"upscale": True}),
    ("a forest --upscale enhancer --upscale-model R-ESRGAN 4x+", {"upscale_by": 2.5}),  # a stand-in host upscaler
    ("a forest --u upscaler --upscale-model none", {"upscale_mode": "enhancer", "upscale_model": "DAT x2"}),
    ("a city at night --batch-size 3 --seed 12", {}),
    ("a city at night --b 100000", {}),
    ("a city --landscape --small", {"base_steps": 10}),
    ("a city --large --aspect 21:9", {}),
    ("a city --portrait", {"base_sampler": "euler", "base_scheduler": "karras"}),
    ("(a cat:1.3) on a (roof:0.8)", {"base_cfg": 6.5, "refine_cfg": 4.0}),
    ("a dog --variant 9", {"style": "PIXEL_ART"}),
    ("a dog --cfg-adjust -0.3 --style NOPE", {}),
    ("a dog --sed 5 --aspect wide", {}),
    ("a ship --seed random", {"refine_strength": 0.35}),
    ("a ship", {"refine_steps": 7, "refine_strength": 0.5, "detail_level": 2}),
    ("a ship --style none", {"style": "COLOR_INK", "image_shift": 3}),
    ("", {"style": "DARKFAN80"}),
]
WIDTH, HEIGHT, SEED, BATCH = 640, 512, 31, 2


class FixedRng:
    def randint(self, a, b):
        return 4242


def summary(plan) -> dict:
    values = {}
    for field in dataclasses.fields(plan):
        value = getattr(plan, field.name)
        values[field.name] = value.tolist() if isinstance(value, torch.Tensor) else value
    values["texts"] = plan.texts()
    return values


def webui_plan(tb_host, prompt, fields, monkeypatch):
    import tinybreaker_ext.plan as plan_module

    monkeypatch.setattr(plan_module, "random", FixedRng())
    p = tb_host.make_p(prompt=prompt, negative_prompt="blurry", width=WIDTH, height=HEIGHT, seed=SEED,
                       batch_size=BATCH)
    p.all_prompts, p.all_negative_prompts = [prompt] * BATCH, ["blurry"] * BATCH
    p.all_seeds, p.all_subseeds = [SEED + index for index in range(BATCH)], list(range(BATCH))
    run = script_logic.process(p, *script_args(TinyBreakerParams(enabled=True, **fields)))
    script_logic.postprocess(p)
    assert run.error is None, run.error
    return run.generation


def cli_plan(prompt, fields):
    argv = [prompt, "--negative", "blurry", "--width", str(WIDTH), "--height", str(HEIGHT), "--seed", str(SEED),
            "--batch", str(BATCH)]
    for name, value in fields.items():
        option = "--" + name.replace("_", "-")
        argv += [option] if value is True else [option, str(value)]
    args = cli.build_parser().parse_args(argv)
    return plan_for(cli.cli_params(args), cli.cli_request(args), rng=FixedRng())


@pytest.mark.parametrize("prompt, fields", CASES, ids=[f"{index}" for index in range(len(CASES))])
def test_the_webui_and_the_command_line_make_the_same_plan(make_tb_host, monkeypatch, prompt, fields):
    tb_host = make_tb_host("a1111")
    assert summary(webui_plan(tb_host, prompt, fields, monkeypatch)) == summary(cli_plan(prompt, fields))


def test_the_cases_cover_every_inline_argument_and_many_fields():
    from tinybreaker_ext.prompt.grammar import ARGUMENTS, parse_inline_prompt

    seen = {name for prompt, _ in CASES for name in parse_inline_prompt(prompt).args}
    assert seen >= {spec.name for spec in ARGUMENTS if spec.name != "prompt"}
    assert len({name for _, fields in CASES for name in fields}) >= 10

"""Write tests/fixtures/reference_values.json from the reference's own code (ComfyUI, ComfyUI-TinyBreaker).

Nothing here is ours: every number comes from calling functions of the checkouts named on the command line, with the
inputs of tests/builders/reference_inputs.py, so test_sampling_reference.py can compare our ports with them in every
CI run without ComfyUI. Run it outside CI, in an environment with what the imported reference modules need (torch,
numpy, scipy, torchsde, transformers, tqdm, einops, safetensors, psutil, pillow, pyyaml):

    python tests/builders/reference_values.py /path/to/ComfyUI /path/to/ComfyUI-TinyBreaker

Both must be git checkouts (their commits are recorded): ComfyUI at tag v0.3.55, ComfyUI-TinyBreaker at v0.3.1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builders import reference_inputs as inputs  # noqa: E402  (plain torch: importable in the reference's venv)
from builders.t5 import t5_state_dict  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "fixtures" / "reference_values.json"
TINYBREAKER_PACKAGE = "tinybreaker_reference"  # its folder is "nodes", which ComfyUI's own nodes.py would shadow


def _git_commit(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def _import_comfyui(root: Path):
    sys.path.insert(0, str(root))
    import transformers  # noqa: F401  (first: it probes for torchvision once, and must not see the stand-in)

    try:
        import torchvision  # noqa: F401
    except Exception:
        # Only comfy.ldm.cosmos imports torchvision (a video model, at import time); no sampling code uses it, and
        # no CPU build of it may exist for the installed torch, so an empty stand-in lets the import chain load.
        for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        stand_in = types.ModuleType("torchvision")
        stand_in.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.update({"torchvision": stand_in, "torchvision.transforms": stand_in.transforms})
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no accelerator is probed
    modules = {}
    for name in ("comfy.samplers", "comfy.sample", "comfy.model_base", "comfy.model_sampling", "comfy.sd1_clip",
                 "comfy.text_encoders.t5", "comfy.text_encoders.sd3_clip"):
        modules[name.split(".")[-1]] = importlib.import_module(name)
    return types.SimpleNamespace(**modules)


def _import_tinybreaker(root: Path):
    package = types.ModuleType(TINYBREAKER_PACKAGE)
    package.__path__ = [str(root / "nodes")]
    sys.modules[TINYBREAKER_PACKAGE] = package
    names = {"sigmas": "core.comfyui_bridge.helpers.sigmas", "styles": "core.styles", "genparams": "core.genparams",
             "tiles": "core.tiles", "t5_config": "core.comfyui_bridge.t5.t5_config"}
    return types.SimpleNamespace(**{key: importlib.import_module(f"{TINYBREAKER_PACKAGE}.{name}")
                                    for key, name in names.items()})


class _Guider:
    """What KSAMPLER.sample and the k-diffusion samplers see of comfy.samplers.CFGGuider: a callable returning the
    denoised latent, ``.inner_model.model_sampling`` and ``.model_patcher.get_model_object("model_sampling")``."""

    def __init__(self, model_sampling):
        self.inner_model = types.SimpleNamespace(model_sampling=model_sampling)
        self.model_patcher = types.SimpleNamespace(get_model_object={"model_sampling": model_sampling}.__getitem__)

    def __call__(self, x, sigma, model_options=None, seed=None):
        return inputs.analytic_denoised(x, sigma)


def tables_section(samplings):
    return {name: {"sigmas": inputs.encode(ms.sigmas), "log_sigmas": inputs.encode(ms.log_sigmas),
                   "timestep_of": [int(t) for t in ms.timestep(torch.tensor(inputs.TIMESTEP_SIGMAS))],
                   "sigma_at": inputs.encode(ms.sigma(torch.tensor(inputs.FRACTIONAL_TIMESTEPS)))}
            for name, ms in samplings.items()}


def schedules_section(comfy, samplings):
    return {table: {scheduler: {str(steps): inputs.encode(comfy.samplers.calculate_sigmas(ms, scheduler, steps))
                                for steps in inputs.SCHEDULE_STEPS}
                    for scheduler in inputs.SCHEDULERS}
            for table, ms in samplings.items()}


def windows_section(tinybreaker, samplings):
    result = {}
    for table, ms in samplings.items():
        for sampler in inputs.WINDOW_SAMPLERS:
            for scheduler in inputs.SCHEDULERS:
                for window in inputs.WINDOWS:
                    key = "/".join(map(str, (table, sampler, scheduler) + window))
                    result[key] = inputs.encode(tinybreaker.sigmas.calculate_sigmas(ms, sampler, scheduler, *window))
    return result


STAGE_KEYS = ("sampler", "scheduler", "steps", "steps_start", "steps_end", "cfg", "noise_seed")


def styles_section(tinybreaker, samplings, styles_file: Path):
    """Each style's stage parameters as the reference's own style parser reads them, and the sigmas its
    calculate_sigmas gives for them (the refiner's for every detail level)."""
    styles = tinybreaker.styles.Styles.from_file(str(styles_file))
    result = {}
    for name in styles.names():
        genparams = styles.get_genparams_for_style(name)
        style = {}
        for stage, table in inputs.STAGE_TABLES.items():
            params = {key: genparams.get(f"{stage}.{key}") for key in STAGE_KEYS}
            params["steps_end"] = int(params["steps_end"])  # "-1" stays a string in the reference's parser
            nfactors = inputs.REFINER_NFACTORS if stage == "refiner" else (0,)
            sigmas = {str(nfactor): inputs.encode(tinybreaker.sigmas.calculate_sigmas(
                samplings[table], params["sampler"], params["scheduler"], params["steps"], params["steps_start"],
                params["steps_end"], nfactor)) for nfactor in nfactors}
            style[stage] = {"params": params, "sigmas": sigmas}
        result[name] = style
    return result


def samplers_section(comfy, tinybreaker, samplings):
    result = {}
    for case, (table, scheduler, steps, start, end, batch, latent_seed, noise_seed) in inputs.SAMPLER_CASES.items():
        ms = samplings[table]
        guider = _Guider(ms)
        latent = inputs.latent(batch, latent_seed)
        noise = comfy.sample.prepare_noise(latent, noise_seed)
        runs, starts = {}, {}
        for name in inputs.SAMPLERS:
            sigmas = tinybreaker.sigmas.calculate_sigmas(ms, name, scheduler, steps, start, end, 0)
            recorded = inputs.encode(sigmas)  # now: the reference's uni_pc sets the caller's final 0 to 0.001
            sampler = comfy.samplers.sampler_object(name)
            max_denoise = sampler.max_denoise(guider, sigmas)
            start_point = ms.noise_scaling(sigmas[0], noise, latent, max_denoise)
            output = sampler.sample(guider, sigmas, {"model_options": {}, "seed": noise_seed}, None, noise,
                                    latent_image=latent, denoise_mask=None, disable_pbar=True)
            starts[repr(float(sigmas[0]))] = inputs.encode(start_point)  # shared by the runs that start there
            runs[name] = {"sigmas": recorded, "max_denoise": max_denoise, "output": inputs.encode(output)}
        result[case] = {"noise": inputs.encode(noise), "starts": starts, "runs": runs}
    return result


def noise_section(comfy):
    return {case: inputs.encode(comfy.sample.prepare_noise(torch.zeros(shape), seed))
            for case, (shape, seed) in inputs.NOISE_CASES.items()}


def cfg_section(comfy):
    """comfy.samplers.cfg_function on the stand-in's cond and uncond predictions; at a cfg of 1, sampling_function
    skips the uncond pass and calc_cond_batch hands cfg_function zeros in its place, so that is what it gets here."""
    x = inputs.small_latent(5) * 3.0
    sigma = torch.tensor([3.3, 0.7])
    cond = inputs.conditioned_denoised(x, sigma, torch.full((2,), inputs.COND_STRENGTH))
    uncond = inputs.conditioned_denoised(x, sigma, torch.full((2,), inputs.UNCOND_STRENGTH))
    result = {}
    for scale in inputs.CFG_SCALES:
        skipped = math.isclose(scale, 1.0)
        combined = comfy.samplers.cfg_function(None, cond, torch.zeros_like(x) if skipped else uncond, scale, x, sigma)
        result[repr(scale)] = inputs.encode(combined)
    return result


def eps_section(samplings):
    """BaseModel._apply_model's EPS path: calculate_input, timestep(σ).float(), network, calculate_denoised."""
    x = inputs.small_latent(9) * 4.0
    result = {}
    for table, ms in samplings.items():
        for sigma_value in (float(ms.sigma_max), 3.3, 0.7, float(ms.sigma_min)):
            sigma = torch.full((2,), sigma_value)
            x_in = ms.calculate_input(sigma, x)
            eps = inputs.analytic_eps(x_in, ms.timestep(sigma).float()).float()
            result[f"{table}/{sigma_value!r}"] = inputs.encode(ms.calculate_denoised(sigma, eps, x))
    return result


def max_denoise_section(comfy, samplings):
    sampler = comfy.samplers.sampler_object("euler")
    result = {}
    for table, ms in samplings.items():
        top = float(ms.sigma_max)
        for sigma0 in (top, top * (1 - 1e-6), top * (1 - 1e-4), top * 1.5, 14.6, 1.0):
            result[f"{table}/{sigma0!r}"] = sampler.max_denoise(_Guider(ms), torch.tensor([sigma0, 0.0]))
    return result


TEMPLATES = ("A photo{. $@}", "{$@ .}bokeh, (film:1.1)", "plain $@ text", "no placeholder", "",
             "A {device} photo of $@ in a {place}", "Comic of {$@}. Poster", "(q:1.8){. $@}", "x{, $@}y{z}",
             "{a}$@{b}")
TEMPLATE_PROMPTS = ("a cat", "", "two, words")


def templates_section(tinybreaker):
    """ComfyUI-TinyBreaker's template substitution ($@ and the {...} block around it)."""
    replace = tinybreaker.genparams._replace_template_placeholder
    return {template: {prompt: replace(template, prompt) for prompt in TEMPLATE_PROMPTS} for template in TEMPLATES}


def tiles_section(tinybreaker):
    """The Tiny Upscaler's tile sweeps (apply_tiles_tlbr for even steps, apply_tiles_brtl for odd ones): each tile's
    read box and the box its result is written to, as (top, bottom, left, right), in processing order."""
    result = {}
    for height, width, tile_size in inputs.TILE_CASES:
        sweeps = {}
        for direction, apply_tiles in (("forward", tinybreaker.tiles.apply_tiles_tlbr),
                                       ("backward", tinybreaker.tiles.apply_tiles_brtl)):
            canvas = torch.full((1, 1, height, width), -1.0)
            reads = []

            def tile_of(canvas, x, y, tile_width, tile_height):
                reads.append([y, y + tile_height, x, x + tile_width])
                return torch.full((1, 1, tile_height, tile_width), float(len(reads) - 1))

            apply_tiles(canvas, create_tile_func=tile_of, tile_size=tile_size)
            assert bool((canvas >= 0).all()), "a sweep left part of the canvas unwritten"
            writes = []
            for index in range(len(reads)):  # every tile writes one rectangle that no other tile writes
                rows, cols = torch.nonzero(canvas[0, 0] == index, as_tuple=True)
                box = [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1]
                assert len(rows) == (box[1] - box[0]) * (box[3] - box[2])
                writes.append(box)
            sweeps[direction] = {"read": reads, "write": writes}
        result[f"{height}x{width}/{tile_size}"] = sweeps
    return result


class _StandInT5Tokenizer:
    """Takes the place of transformers' T5TokenizerFast in the reference's T5 tokenizers (no real vocabulary can be
    shipped with the tests): ids from reference_inputs.stand_in_token_ids, then </s>, as T5's post-processor adds."""

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()

    def __call__(self, text):
        return {"input_ids": inputs.stand_in_token_ids(text) + [inputs.T5_EOS]}

    def get_vocab(self):
        return {"<pad>": inputs.T5_PAD, "</s>": inputs.T5_EOS}


def t5_section(comfy, tinybreaker, embeddings_dir: Path):
    """Token ids and weights from ComfyUI's SD3 T5 tokenizer (ComfyUI-TinyBreaker's default) and from
    ComfyUI-TinyBreaker's "pixart" one; and, for a few prompts, the SD3 mode's weighted embeddings from ComfyUI's own
    T5 and encode_token_weights on the tiny random T5 of builders/t5.py (T5XXLModel_SD3's settings, tiny config)."""
    comfy.sd3_clip.T5TokenizerFast = _StandInT5Tokenizer
    tinybreaker.t5_config.T5TokenizerFast = _StandInT5Tokenizer
    tokenizers = {"sd3": comfy.sd3_clip.T5XXLTokenizer(embedding_directory=str(embeddings_dir)),
                  "pixart": tinybreaker.t5_config.T5XXLTokenizer_PA(embedding_directory=str(embeddings_dir))}
    tokens = {}
    for mode, tokenizer in tokenizers.items():
        assert tokenizer.min_length == inputs.T5_MIN_LENGTHS[mode]
        tokens[mode] = {}
        for prompt in inputs.T5_PROMPTS:
            batches = tokenizer.tokenize_with_weights(prompt)
            assert len(batches) == 1  # max_length 99999999: never split
            tokens[mode][prompt] = {"ids": [int(t) for t, _ in batches[0]], "weights": [w for _, w in batches[0]]}

    config = {"d_ff": inputs.TINY_T5["d_ff"], "d_kv": inputs.TINY_T5["d_kv"], "d_model": inputs.TINY_T5["d_model"],
              "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True, "layer_norm_epsilon": 1e-06,
              "model_type": "t5", "num_heads": inputs.TINY_T5["num_heads"], "num_layers": inputs.TINY_T5["num_layers"],
              "relative_attention_num_buckets": 32, "vocab_size": inputs.TINY_T5["vocab_size"]}
    model = comfy.sd1_clip.SDClipModel(layer="last", textmodel_json_config=config, special_tokens={"end": 1, "pad": 0},
                                       model_class=comfy.t5.T5, enable_attention_masks=False,
                                       return_attention_masks=False)
    missing, unexpected = model.load_sd(t5_state_dict(**inputs.TINY_T5))
    assert not missing and not unexpected, (missing, unexpected)
    embeddings = {}
    for prompt in inputs.T5_ENCODED_PROMPTS:
        encoded = model.encode_token_weights(tokenizers["sd3"].tokenize_with_weights(prompt))
        embeddings[prompt] = inputs.encode(encoded[0])
    return {"tokens": tokens, "sd3_embeddings": embeddings}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comfyui", type=Path, help="a ComfyUI checkout (git), e.g. at tag v0.3.55")
    parser.add_argument("tinybreaker", type=Path, help="a ComfyUI-TinyBreaker checkout (git), e.g. at v0.3.1")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # results must not depend on the thread count
    comfy = _import_comfyui(args.comfyui.resolve())
    tinybreaker = _import_tinybreaker(args.tinybreaker.resolve())
    samplings = {name: comfy.model_base.model_sampling(types.SimpleNamespace(sampling_settings=settings),
                                                       comfy.model_base.ModelType.EPS)
                 for name, settings in inputs.TABLES.items()}
    import comfyui_version
    import numpy
    import scipy

    with tempfile.TemporaryDirectory() as embeddings_dir:  # a models folder without the named embeddings
        t5 = t5_section(comfy, tinybreaker, Path(embeddings_dir))
    fixture = {
        "source": {"comfyui_commit": _git_commit(args.comfyui), "comfyui_version": comfyui_version.__version__,
                   "tinybreaker_commit": _git_commit(args.tinybreaker), "torch": torch.__version__,
                   "numpy": numpy.__version__, "scipy": scipy.__version__},
        "tables": tables_section(samplings),
        "schedules": schedules_section(comfy, samplings),
        "windows": windows_section(tinybreaker, samplings),
        "styles": styles_section(tinybreaker, samplings, args.tinybreaker / "styles" / "styles_v03.ini"),
        "samplers": samplers_section(comfy, tinybreaker, samplings),
        "noise": noise_section(comfy),
        "cfg": cfg_section(comfy),
        "eps_denoiser": eps_section(samplings),
        "max_denoise": max_denoise_section(comfy, samplings),
        "templates": templates_section(tinybreaker),
        "tiles": tiles_section(tinybreaker),
        "t5": t5,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sections = (f"{json.dumps(name)}:{json.dumps(value, sort_keys=True, separators=(',', ':'))}"
                for name, value in sorted(fixture.items()))
    args.output.write_text("{\n" + ",\n".join(sections) + "\n}\n")  # one line a section: compact, diffable
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

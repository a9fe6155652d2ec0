"""Speed of the base stage (issue 13): PixArt forwards per sampling step, device→host syncs per step, and the base
stage against diffusers' ``PixArtSigmaPipeline`` at equal steps and size, all in one run.

1. **Forwards per step** for a 77/120/300-token prompt against a 77-token negative, with the base stage's own
   denoiser chain (``CFGDenoiser(EpsDenoiser(pixart.eps), accepts_context_mask=True)``, every sampler): must be 1.
   Counted on a full-width PixArt-Sigma (one block) on the ``meta`` device (shapes only); then the same count
   through ``TinyBreakerPipeline.base``, the product's entry point (tiny models).
2. **Device→host syncs per step**: the same chain on the meta device as a stand-in accelerator
   (``tests/builders/device_transfers.py``) counts every read of a device tensor on the host and every host→device
   copy, per step after the first; also through ``TinyBreakerPipeline.base``.
3. **Base stage vs diffusers on the CPU**: a full-size PixArt-Sigma-XL with random weights (the cached fp16 file,
   float32 compute) in both: the product's loader and sampler loop (uni_pc, the built-in style's base sampler, as
   ``pipeline.base`` runs it, with all images in one batch) against ``PixArtSigmaPipeline`` with a
   ``PixArtTransformer2DModel`` holding the same weights and its default ``DPMSolverMultistepScheduler``, at the
   same number of steps (= transformer forwards), size and cfg. Both get the same random text embeddings (T5 is
   out of the measurement). diffusers needs prompt and negative of equal length: it runs twice, padded with masks
   to 300 tokens (what its own ``encode_prompt`` does) and to the longer of the two. Runs are interleaved; the
   ratio printed is the median over repeats of product time / diffusers time. Target ≤ 0.9. Then single
   transformer forwards with each side's batched inputs, alternated call by call, give the same ratio with far
   less drift from other load on the machine (whole runs take minutes on a busy CPU); "fastest / fastest"
   compares each side's quickest forward, the estimate least moved by other load (load only ever adds time).

    python bench/base_speed.py                               # 256×256 px, 10 steps, prompt 120 / negative 77
    python bench/base_speed.py --size 512 --steps 8 --repeats 3
    python bench/base_speed.py --compile                     # also the product with compile_pixart
    python bench/base_speed.py --skip-e2e                    # parts 1 and 2 only (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import full_size_pixart_file, load_average, tiny_model_files  # noqa: E402

CAPTION_WIDTH = 4096
PROMPT_LENGTHS = (77, 120, 300)
NEGATIVE_LENGTH = 77
DIFFUSERS_MAX_SEQUENCE = 300  # PixArtSigmaPipeline.encode_prompt pads every prompt to this many tokens
TARGET_RATIO = 0.9


def random_embeddings(length: int, seed: int, width: int = CAPTION_WIDTH) -> torch.Tensor:
    return torch.randn(1, length, width, generator=torch.Generator().manual_seed(seed))


def product_denoiser(pixart, conds, unconds, cfg: float):
    """The base stage's denoiser chain with this branch's API: masked contexts, all images in one batch."""
    from tinybreaker_ext.sampling.denoisers import CFGDenoiser, EpsDenoiser
    from tinybreaker_ext.sampling.schedules import pixart_sigmas

    return CFGDenoiser(EpsDenoiser(pixart.eps, pixart_sigmas()), conds, unconds, cfg, accepts_context_mask=True,
                       prepare_context=pixart.prepare_caption)


def product_base(pixart, conds, unconds, *, sampler: str, steps: int, cfg: float, size: int, seeds: list[int],
                 callback=None) -> torch.Tensor:
    """What ``pipeline.base`` does between encoding and returning, with every image of the batch sampled at once."""
    from tinybreaker_ext.sampling.noise import noised_start, stage_noise
    from tinybreaker_ext.sampling.samplers import get_sampler
    from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas

    sigmas = compute_sigmas(pixart_sigmas(), sampler=sampler, scheduler="simple", steps=steps, steps_start=0)
    shape = (1, 4, size // 8, size // 8)
    device = pixart.device
    x = torch.cat([noised_start(torch.zeros(shape), stage_noise(shape, seed), sigmas[0], pixart_sigmas()[-1])
                   for seed in seeds]).to(device)
    denoiser = product_denoiser(pixart, conds, unconds, cfg)
    return get_sampler(sampler)(denoiser, x, sigmas, seeds=seeds, callback=callback)


class ForwardCounter:
    """Counts (and times) a module's forwards with hooks."""

    def __init__(self, module: torch.nn.Module):
        self.calls, self.seconds, self._start = 0, 0.0, 0.0
        self._handles = [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]

    def _before(self, *_):
        self._start = time.perf_counter()

    def _after(self, *_):
        self.calls += 1
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.calls, self.seconds = 0, 0.0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def meta_pixart():
    """A full-width PixArt-Sigma on the meta device with one block: the call pattern does not depend on the depth,
    and each meta block costs ~0.1 s of Python shape logic."""
    from builders.pixart import FULL_SIZE, pixart_state_dict
    from tinybreaker_ext.models.pixart import load_pixart

    return load_pixart(pixart_state_dict(**dict(FULL_SIZE, depth=1), device="meta"), device="meta")


def tiny_pipeline(prompt_tokens: int, device: str = "cpu"):
    """A real TinyBreakerPipeline on the tiny test files whose T5 returns random embeddings of given lengths."""
    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    tiny = tiny_model_files()
    pipeline = TinyBreakerPipeline(tiny["checkpoint"], tiny["t5"], device=device,
                                   tokenizer_path=tiny["t5_tokenizer"], tokenizer_search={"allow_download": False})
    width = pipeline.pixart.config.caption_dim
    lengths = {"prompt": prompt_tokens, "negative": NEGATIVE_LENGTH}
    pipeline.encode = lambda text, **_: random_embeddings(lengths[text], len(text), width)
    return pipeline


def pipeline_base(pipeline, sampler: str, steps: int, seeds: list[int], callback=None):
    from tinybreaker_ext.sampling.schedules import compute_sigmas, pixart_sigmas
    from tinybreaker_ext.stage_params import StageParams

    pipeline._base_cache = None
    stage = StageParams(sampler=sampler, scheduler="simple", steps=steps, steps_start=0, cfg=3.4)
    sigmas = compute_sigmas(pixart_sigmas(), sampler=sampler, scheduler="simple", steps=steps, steps_start=0)
    return pipeline.base(["prompt"], ["negative"], stage, sigmas, width=64, height=64, seeds=seeds,
                         callback=callback)


# ---- 1. forwards per step -----------------------------------------------------------------------------------------

def forwards_per_step(steps: int) -> dict:
    from tinybreaker_ext.sampling.samplers import SAMPLERS

    pixart = meta_pixart()
    counter = ForwardCounter(pixart)
    rows = {}
    print(f"1. PixArt forwards per sampling step (prompt / negative {NEGATIVE_LENGTH} tokens, {steps} steps, "
          f"full-width PixArt on the meta device, 1024×1024 px; 2 images = one batch)")
    print(f"   {'sampler':<16}" + "".join(f"{f'{n} tok':>9}" for n in PROMPT_LENGTHS) + f"{'2 images':>10}")
    for name in SAMPLERS:
        cells = []
        for length, images in [(n, 1) for n in PROMPT_LENGTHS] + [(120, 2)]:
            conds = [random_embeddings(length + k, k) for k in range(images)]
            unconds = [random_embeddings(NEGATIVE_LENGTH, 10 + k) for k in range(images)]
            counter.reset()
            reported = []
            product_base(pixart, conds, unconds, sampler=name, steps=steps, cfg=3.4, size=1024,
                         seeds=list(range(images)), callback=lambda step, *_: reported.append(step))
            cells.append(counter.calls / len(reported))
        rows[name] = cells
        print(f"   {name:<16}" + "".join(f"{value:>9.2f}" for value in cells[:-1]) + f"{cells[-1]:>10.2f}")
    counter.remove()
    # UniPC evaluates the model once per step too; its count is steps/steps. Anything above 1 is a second forward.
    worst = max(max(cells) for cells in rows.values())
    print(f"   worst: {worst:.2f} forwards per step ({'OK' if worst <= 1.0 else 'ABOVE 1'})")

    tiny_rows = {}
    for length in PROMPT_LENGTHS:
        pipeline = tiny_pipeline(length)
        counter = ForwardCounter(pipeline.pixart)
        reported = []
        pipeline_base(pipeline, "uni_pc", steps, [1], callback=lambda step, *_: reported.append(step))
        tiny_rows[length] = counter.calls / len(reported)
        counter.remove()
    print("   for comparison, TinyBreakerPipeline.base (uni_pc, tiny models): "
          + ", ".join(f"{n} tok {value:.2f}" for n, value in tiny_rows.items()))
    return {"product": rows, "pipeline_base": tiny_rows, "worst": worst}


# ---- 2. device→host syncs per step --------------------------------------------------------------------------------

def syncs_per_step(steps: int) -> dict:
    from builders.device_transfers import DEVICE, TransferCounter
    from tinybreaker_ext.sampling.samplers import SAMPLERS

    pixart = meta_pixart()
    conds = [random_embeddings(120, 1), random_embeddings(300, 2)]
    unconds = [random_embeddings(NEGATIVE_LENGTH, 3)] * 2
    print(f"\n2. Device→host reads and host→device copies per step after the first (meta device as the "
          f"accelerator; 2 images, prompts 120 and 300 tokens, negative {NEGATIVE_LENGTH}; {steps} steps)")
    print(f"   {'sampler':<16}{'reads/step':>11}{'copies/step':>13}   reads before the first step")
    rows = {}
    for name in SAMPLERS:
        counter = TransferCounter()
        with counter:
            product_base(pixart, conds, unconds, sampler=name, steps=steps, cfg=3.4, size=1024, seeds=[1, 2],
                         callback=lambda *_: counter.mark_step())
        later = len(counter.reads) - 1
        reads = sum(map(len, counter.reads[1:])) / later
        copies = sum(map(len, counter.copies[1:])) / later
        rows[name] = {"reads_per_step": reads, "copies_per_step": copies, "setup_reads": len(counter.reads[0])}
        print(f"   {name:<16}{reads:>11.2f}{copies:>13.2f}   {len(counter.reads[0])}")
    worst = max(row["reads_per_step"] for row in rows.values())
    print(f"   worst: {worst:.2f} reads per step ({'OK' if worst == 0 else 'ABOVE 0'}); copies are the stochastic "
          f"samplers' host-made noise (pinned, asynchronous on CUDA)")

    today = None
    try:
        pipeline = tiny_pipeline(120, device=str(DEVICE))
        counter = TransferCounter()
        with counter:
            pipeline_base(pipeline, "uni_pc", steps, [1], callback=lambda *_: counter.mark_step())
        later = len(counter.reads) - 1
        today = sum(map(len, counter.reads[1:])) / later
        where = sorted({entry.split(" at ", 1)[1].split(" ", 1)[0] for entry in sum(counter.reads[1:], [])})
        print(f"   for comparison, TinyBreakerPipeline.base (uni_pc, tiny models): {today:.2f} reads per step "
              f"({', '.join(where)})")
    except Exception as error:  # a meta-device limit of some library version: report it, don't stop the run
        print(f"   TinyBreakerPipeline.base could not run on the meta device: {type(error).__name__}: {error}")
    return {"product": rows, "pipeline_base_reads_per_step": today, "worst": worst}


# ---- 3. base stage vs diffusers -----------------------------------------------------------------------------------

def diffusers_pipeline(pixart):
    """``PixArtSigmaPipeline`` around a ``PixArtTransformer2DModel`` whose parameters are views of ``pixart``'s (the
    fused q/k/v rows are contiguous slices), so both sides compute with the same weights and memory holds them once."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    from tinybreaker_ext.models.pixart_keys import DIFFUSERS, source_keys

    config = pixart.config
    with torch.device("meta"):
        transformer = PixArtTransformer2DModel(
            num_attention_heads=config.num_heads, attention_head_dim=config.hidden_size // config.num_heads,
            in_channels=config.in_channels, out_channels=config.out_channels, num_layers=config.depth,
            cross_attention_dim=config.hidden_size, sample_size=config.latent_size, patch_size=config.patch_size,
            caption_channels=config.caption_dim, interpolation_scale=config.pe_interpolation,
            use_additional_conditions=False)
    views = {}
    for key, value in pixart.state_dict().items():
        targets = source_keys(key, DIFFUSERS)
        views.update(zip(targets, value.chunk(len(targets), dim=0)))
    transformer.load_state_dict(views, strict=True, assign=True)
    transformer.eval().requires_grad_(False)
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                            num_train_timesteps=1000)
    pipe = PixArtSigmaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=transformer,
                               scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def padded_with_mask(embedding: torch.Tensor, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedding followed by random 'padding token' states up to ``length``, and its attention mask."""
    extra = length - embedding.shape[1]
    padding = torch.randn(1, extra, CAPTION_WIDTH, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[:, :embedding.shape[1]] = 1
    return torch.cat([embedding, padding], dim=1), mask


def run_diffusers(pipe, cond, uncond, *, length: int, steps: int, cfg: float, size: int, seeds: list[int]):
    prompt, prompt_mask = padded_with_mask(cond, length, 100)
    negative, negative_mask = padded_with_mask(uncond, length, 101)
    return pipe(negative_prompt=None, prompt_embeds=prompt, prompt_attention_mask=prompt_mask,
                negative_prompt_embeds=negative, negative_prompt_attention_mask=negative_mask,
                num_inference_steps=steps, guidance_scale=cfg,
                height=size, width=size, num_images_per_prompt=len(seeds), output_type="latent",
                use_resolution_binning=False, generator=torch.Generator().manual_seed(seeds[0])).images


def end_to_end(args) -> dict:
    from tinybreaker_ext.files.safetensors_file import open_safetensors
    from tinybreaker_ext.models.pixart import compile_pixart, load_pixart

    path = args.checkpoint or full_size_pixart_file()
    start = time.perf_counter()
    with open_safetensors(path) as file:
        pixart = load_pixart(file, dtype=torch.float32)
    load_seconds = time.perf_counter() - start
    pipe = diffusers_pipeline(pixart)
    cond, uncond = random_embeddings(args.tokens, 1), random_embeddings(args.negative_tokens, 2)
    seeds = list(range(1, args.images + 1))
    common = dict(steps=args.steps, cfg=args.cfg, size=args.size)
    ours, theirs = ForwardCounter(pixart), ForwardCounter(pipe.transformer)
    variants = {"diffusers@300": DIFFUSERS_MAX_SEQUENCE,
                f"diffusers@{max(args.tokens, args.negative_tokens)}": max(args.tokens, args.negative_tokens)}

    compiled = None  # compile_pixart's function, used only by the "product+compile" runs

    def product(steps=args.steps, compile_blocks=False):
        pixart.compiled_block = compiled if compile_blocks else None
        return product_base(pixart, [cond] * args.images, [uncond] * args.images, sampler=args.sampler,
                            seeds=seeds, **dict(common, steps=steps))

    def diffusers(length: int):
        return lambda steps=args.steps: run_diffusers(pipe, cond, uncond, length=length, seeds=seeds,
                                                      **dict(common, steps=steps))

    runs = {"product": product}
    runs.update({name: diffusers(length) for name, length in variants.items()})
    compile_seconds = None
    if args.compile:
        start = time.perf_counter()
        if compile_pixart(pixart, "cpu"):
            compiled = pixart.compiled_block
            product(steps=1, compile_blocks=True)  # compiles for this shape
            compile_seconds = time.perf_counter() - start
            runs["product+compile"] = lambda steps=args.steps: product(steps, compile_blocks=True)
        else:
            print("   compile_pixart: not supported here; skipped")

    print(f"\n3. Base stage, product / diffusers PixArtSigmaPipeline {_version('diffusers')} on the CPU: "
          f"{args.size}×{args.size} px, {args.steps} steps, cfg {args.cfg}, {args.images} image(s), prompt "
          f"{args.tokens} / negative {args.negative_tokens} tokens, float32, torch threads "
          f"{torch.get_num_threads()}; product loads in {load_seconds:.1f} s"
          + (f"; compiling took {compile_seconds:.1f} s" if compile_seconds else ""))
    for name, run in runs.items():  # warm-up (one step each): allocator, kernels, position embeddings
        if name != "product+compile":
            run(steps=1)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    forwards: dict[str, tuple[int, float]] = {}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            counter = theirs if name.startswith("diffusers") else ours
            counter.reset()
            start = time.perf_counter()
            latent = run()
            seconds[name].append(time.perf_counter() - start)
            forwards[name] = (counter.calls, counter.seconds)
            if not torch.isfinite(latent).all():
                raise SystemExit(f"{name}: the latent is not finite")
            print(f"   repeat {repeat + 1}: {name:<18} {seconds[name][-1]:8.2f} s  ({counter.calls} forwards, "
                  f"{counter.seconds:.2f} s in them; load average {load_average()})", flush=True)
    result = {"seconds": seconds, "forwards": {k: v[0] for k, v in forwards.items()}}
    for product_name in [name for name in runs if name.startswith("product")]:
        for name in variants:
            ratios = [a / b for a, b in zip(seconds[product_name], seconds[name])]
            median = statistics.median(ratios)
            verdict = "within" if median <= TARGET_RATIO else "ABOVE"
            print(f"   {product_name} / {name}: median {median:.3f} (per repeat "
                  f"{', '.join(f'{r:.3f}' for r in ratios)}) — {verdict} the target {TARGET_RATIO}")
            result[f"{product_name}/{name}"] = median
    if len({calls for calls, _ in forwards.values()}) != 1:
        print(f"   WARNING: forward counts differ: {forwards}")
    if args.forward_pairs:
        result["forward_pairs"] = forward_pairs(pixart, pipe, cond, uncond, variants, compiled, args)
    return result


def forward_pairs(pixart, pipe, cond, uncond, variants: dict[str, int], compiled, args) -> dict:
    """Single transformer forwards with each side's own batched inputs, alternated call by call (load drifts far
    less within one round than over whole runs): product (masked to the longer prompt) vs diffusers per variant."""
    generator = torch.Generator().manual_seed(0)
    latent = args.size // 8
    x = torch.randn(2, 4, latent, latent, generator=generator)
    timesteps = torch.full((2,), 500.0)
    (call,) = product_denoiser(pixart, [cond], [uncond], args.cfg).context_calls(1, pixart.device)
    sides = {"product": lambda: pixart(x, timesteps, call.context)}
    if compiled is not None:
        sides["product+compile"] = lambda: _compiled_forward(pixart, compiled, x, timesteps, call)
    for name, length in variants.items():
        prompt, prompt_mask = padded_with_mask(cond, length, 100)
        negative, negative_mask = padded_with_mask(uncond, length, 101)
        embeddings, mask = torch.cat([negative, prompt]), torch.cat([negative_mask, prompt_mask])
        sides[name] = (lambda embeddings=embeddings, mask=mask: pipe.transformer(
            x, encoder_hidden_states=embeddings, encoder_attention_mask=mask, timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0])
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    with torch.no_grad():
        for name, forward in sides.items():  # warm-up
            forward()
        for round_index in range(args.forward_pairs):
            names = list(sides)[round_index % len(sides):] + list(sides)[:round_index % len(sides)]
            for name in names:
                start = time.perf_counter()
                forward()
                seconds[name].append(time.perf_counter() - start)
    print(f"   single forwards alternated ({args.forward_pairs} rounds, batch 2, "
          f"{(latent // 2) ** 2} image tokens; mean s: "
          + ", ".join(f"{name} {statistics.mean(values):.2f}" for name, values in seconds.items()) + ")")
    flops = forward_flops(sides)
    print("   floating-point operations per forward (torch's FlopCounterMode; no timing noise): "
          + ", ".join(f"{name} {value / 1e9:.1f} G" for name, value in flops.items()))
    result = {}
    for product_name in [name for name in sides if name.startswith("product")]:
        for name in variants:
            result[f"flops {product_name}/{name}"] = flops[product_name] / flops[name]
            print(f"   operations {product_name} / {name}: {flops[product_name] / flops[name]:.3f}")
            ratios = [a / b for a, b in zip(seconds[product_name], seconds[name])]
            result[f"{product_name}/{name}"] = statistics.median(ratios)
            fastest = min(seconds[product_name]) / min(seconds[name])
            result[f"fastest {product_name}/{name}"] = fastest
            print(f"   forward {product_name} / {name}: median {statistics.median(ratios):.3f} "
                  f"(min {min(ratios):.3f}, max {max(ratios):.3f}); fastest / fastest {fastest:.3f}")
    return result


def forward_flops(sides: dict) -> dict[str, int]:
    """The operations of one forward per side, counted by shape (matrix products and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = {}
    with torch.no_grad():
        for name, forward in sides.items():
            with FlopCounterMode(display=False) as counter:
                forward()
            counts[name] = counter.get_total_flops()
    return counts


def _compiled_forward(pixart, compiled, x, timesteps, call):
    pixart.compiled_block = compiled
    try:
        return pixart(x, timesteps, call.context)
    finally:
        pixart.compiled_block = None


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in px (default 256)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=3.4)
    parser.add_argument("--sampler", default="uni_pc", help="product sampler (default: the base style's uni_pc)")
    parser.add_argument("--tokens", type=int, default=120, help="prompt tokens in part 3 (default 120)")
    parser.add_argument("--negative-tokens", type=int, default=NEGATIVE_LENGTH)
    parser.add_argument("--images", type=int, default=1, help="images per run in part 3")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the product with compile_pixart")
    parser.add_argument("--forward-pairs", type=int, default=4, help="rounds of alternated single forwards "
                                                                     "after the runs (0: none)")
    parser.add_argument("--skip-e2e", action="store_true", help="only parts 1 and 2")
    parser.add_argument("--skip-counts", action="store_true", help="only part 3")
    parser.add_argument("--checkpoint", help="a PixArt-Sigma file for part 3 (default: the cached random one)")
    args = parser.parse_args()

    print(f"load average {load_average()}")
    report = {}
    if not args.skip_counts:
        report["forwards_per_step"] = forwards_per_step(args.steps)
        report["syncs_per_step"] = syncs_per_step(args.steps)
    if not args.skip_e2e:
        report["end_to_end"] = end_to_end(args)
    print(json.dumps(report, default=lambda value: round(value, 4) if isinstance(value, float) else str(value)))


if __name__ == "__main__":
    main()

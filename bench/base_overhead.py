"""Sampler-loop overhead of the base stage (issue 3): total base time / sum of PixArt forward times (target ≤ 1.03).

Runs ``TinyBreakerPipeline.base`` — the product's own loop (CFG batching, eps wrapper, sampler, progress callback) —
on a FULL-SIZE PixArt-Sigma-XL (hidden 1152, 28 blocks, 16 heads, caption 4096, random weights) at a small latent,
once per sampler. T5 is bypassed: ``pipeline.encode`` returns random [1, tokens, 4096] embeddings. The baseline is
the sum of the transformer's own forward times in the same run (forward hooks on the PixArt module, synchronized on
CUDA), so the ratio is what the loop adds around the network. The overhead is split into: the CFG + eps wrappers
(denoiser time minus forward time), the progress callback, DEIS coefficients, torchsde's Brownian tree (build and
queries), and the rest (sampler arithmetic, noise, placement, set-up).

The PixArt weights come from a random fp16 file written once to ``~/.cache/tinybreaker-bench/`` (≈ 1.2 GB) and
loaded through the product's loader; the pipeline's other files are the tiny test models (also cached there).

Before measuring, every sampler runs once with a null network (warms up torch, torchsde, LAPACK, caches).

``--null-network`` measures the loop alone at any size (e.g. 1024 px, the real latent) with a stand-in network that
costs microseconds, and prints the overhead per forward and the shortest forward time for which the ratio would
still be ≤ 1.03 (overhead per forward / 0.03): compare that with your GPU's PixArt forward time.

    python bench/base_overhead.py                           # 256×256 px, 12 steps from 2, five samplers
    python bench/base_overhead.py --size 128 --samplers euler,deis
    python bench/base_overhead.py --null-network --size 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import Timers, full_size_pixart_file, load_average, patched, synchronize, tiny_model_files  # noqa: E402

DEFAULT_SAMPLERS = "uni_pc,dpmpp_2m_sde,deis,euler,lms"
TARGET_RATIO = 1.03
CAPTION_WIDTH = 4096
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def fake_encoder(tokens: dict[str, int], seed: int = 0):
    """Stands in for ``pipeline.encode``: fixed random T5-like embeddings per text, [1, tokens, 4096] on the CPU."""
    cache: dict[str, torch.Tensor] = {}

    def encode(text: str, *, placement=None, t5_mode: str = "auto") -> torch.Tensor:
        if text not in cache:
            generator = torch.Generator().manual_seed(seed + len(cache))
            cache[text] = torch.randn(1, tokens[text], CAPTION_WIDTH, generator=generator)
        return cache[text]

    return encode


def add_forward_timer(module: torch.nn.Module, timers: Timers, label: str = "forward"):
    """Times each call of ``module`` (pre-hook to post-hook, synchronized); returns the hook handles."""
    starts: list[float] = []

    def before(_module, _args):
        synchronize(timers.device)
        starts.append(time.perf_counter())

    def after(_module, _args, _output):
        synchronize(timers.device)
        timers.seconds[label] += time.perf_counter() - starts.pop()
        timers.calls[label] += 1

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def instrument(stack, timers: Timers) -> None:
    """Timing wrappers around the loop's parts (restored when ``stack`` closes). Each costs a few µs per call."""
    import tinybreaker_ext.pipeline as pipeline_module
    from tinybreaker_ext.sampling import samplers, samplers_deis
    from tinybreaker_ext.sampling.denoisers import CFGDenoiser

    stack.enter_context(patched(CFGDenoiser, "__call__", timers.wrap(CFGDenoiser.__call__, "denoiser")))
    stack.enter_context(patched(samplers_deis, "deis_coefficients",
                                timers.wrap(samplers_deis.deis_coefficients, "deis_coefficients")))
    stack.enter_context(patched(samplers.BrownianNoise, "__init__",
                                timers.wrap(samplers.BrownianNoise.__init__, "brownian_tree")))
    stack.enter_context(patched(samplers.BrownianNoise, "__call__",
                                timers.wrap(samplers.BrownianNoise.__call__, "brownian_noise")))
    make_callback = pipeline_module._batch_callback
    stack.enter_context(patched(pipeline_module, "_batch_callback",
                                lambda *args: timers.wrap(make_callback(*args), "callback")))


def breakdown(total: float, seconds: dict[str, float]) -> dict[str, float]:
    forward = seconds.get("forward", 0.0)
    parts = {
        "cfg_eps_wrappers": seconds.get("denoiser", 0.0) - forward,
        "callback": seconds.get("callback", 0.0),
        "deis_coefficients": seconds.get("deis_coefficients", 0.0),
        "brownian": seconds.get("brownian_tree", 0.0) + seconds.get("brownian_noise", 0.0),
    }
    parts["other"] = total - forward - sum(parts.values())
    return parts


class NullNetwork(torch.nn.Module):
    """Stands in for PixArt in ``--null-network`` runs: same call signature and output shape, microseconds of work."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1, device=device, dtype=dtype), requires_grad=False)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, 2, 1, 1) * 0.5  # 8 channels like PixArt (eps + learned variance)


def pipeline_with_network(network: torch.nn.Module, **kwargs):
    """A real ``TinyBreakerPipeline`` (tiny files) whose base network is ``network`` instead of the loaded one."""
    from tinybreaker_ext.pipeline import TinyBreakerPipeline

    class PipelineWithNetwork(TinyBreakerPipeline):
        @property
        def pixart(self):
            return network

    return PipelineWithNetwork(**kwargs)


def run_sampler(pipeline, placement, timers: Timers, name: str, args, texts: tuple[str, str], seed: int) -> dict:
    """One timed ``pipeline.base`` call; returns total, forward time and the overhead parts (seconds)."""
    from tinybreaker_ext.stage_params import StageParams

    stage = StageParams(sampler=name, scheduler=args.scheduler, steps=args.steps, steps_start=args.start, cfg=args.cfg)
    timers.reset()
    synchronize(timers.device)
    begin = time.perf_counter()
    latent = pipeline.base([texts[0]], [texts[1]], stage, width=args.size, height=args.size, seeds=[seed],
                           placement=placement)
    synchronize(timers.device)
    total = time.perf_counter() - begin
    if not torch.isfinite(latent).all():
        raise SystemExit(f"{name}: the base latent is not finite")
    return {"sampler": name, "total_s": total, "forward_s": timers.seconds["forward"],
            "forwards": timers.calls["forward"], "steps": timers.calls["callback"],
            "parts_s": breakdown(total, dict(timers.seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", default=DEFAULT_SAMPLERS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in px; latent = size/8 (default 256)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--start", type=int, default=2, help="steps_start of the window (default 2)")
    parser.add_argument("--scheduler", default="simple")
    parser.add_argument("--cfg", type=float, default=3.4)
    parser.add_argument("--tokens", type=int, default=77, help="prompt length of the fake T5 context")
    parser.add_argument("--negative-tokens", type=int, default=77, help="negative length (CFG batches if LCM ≤ 4×)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per sampler (other seeds); the one with the "
                                                               "least overhead is kept (others load the CPU)")
    parser.add_argument("--null-network", action="store_true", help="measure the loop alone (see above)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default fp32 on CPU, fp16 on CUDA")
    args = parser.parse_args()

    from contextlib import ExitStack

    from tinybreaker_ext.placement import MovePlacement
    import torchsde  # noqa: F401  (its one-time import is not part of the loop)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("fp32" if device.type == "cpu" else "fp16")]
    sampler_names = [s.strip() for s in args.samplers.split(",") if s.strip()]
    tiny = tiny_model_files()
    texts = ("a prompt", "a negative prompt")
    common = dict(t5_path=tiny["t5"], device=device, dtype=dtype, tokenizer_path=tiny["t5_tokenizer"],
                  tokenizer_search={"allow_download": False})
    placement = MovePlacement(device, policy="gpu")
    null_pipeline = pipeline_with_network(NullNetwork(device, dtype), checkpoint_path=tiny["checkpoint"], **common)
    if args.null_network:
        pipeline = null_pipeline
        description = "null network (loop only)"
    else:
        from tinybreaker_ext.pipeline import TinyBreakerPipeline

        pipeline = TinyBreakerPipeline(full_size_pixart_file(), **common)
        start = time.perf_counter()
        pixart = pipeline.pixart
        load_seconds = time.perf_counter() - start
        config = pixart.config
        description = (f"PixArt-Sigma {sum(p.numel() for p in pixart.parameters()) / 1e6:.1f} M parameters "
                       f"({config.depth} blocks, hidden {config.hidden_size}, {config.num_heads} heads), "
                       f"loaded in {load_seconds:.1f} s")
    for each in (pipeline, null_pipeline):
        each.encode = fake_encoder({texts[0]: args.tokens, texts[1]: args.negative_tokens})

    timers = Timers(device)
    latent = args.size // 8
    with ExitStack() as stack:
        instrument(stack, timers)
        for name in sampler_names:  # warm-up on the null network
            run_sampler(null_pipeline, placement, timers, name, args, texts, seed=10_000)
        with placement.use(pipeline.pixart), torch.no_grad():  # warm-up: kernels, allocator, position embeddings
            pipeline.pixart(torch.zeros(2, 4, latent, latent, device=device, dtype=dtype), torch.full((2,), 500.0),
                            torch.zeros(2, args.tokens, CAPTION_WIDTH, device=device, dtype=dtype))
        for handle in add_forward_timer(pipeline.pixart, timers):
            stack.callback(handle.remove)

        print(f"{description}; {dtype} on {device}; latent {latent}×{latent} ({(latent // 2) ** 2} tokens), "
              f"context {args.tokens}/{args.negative_tokens} tokens, cfg {args.cfg}, {args.scheduler} {args.steps} "
              f"steps from {args.start}; torch threads {torch.get_num_threads()}; load average {load_average()}",
              flush=True)
        print(f"{'sampler':<14}{'forwards':>9}{'total s':>10}{'forward s':>11}{'ratio':>8}{'overhead ms':>13}"
              f"{'ms/forward':>12}   overhead parts, ms", flush=True)
        results = []
        for name in sampler_names:
            runs = [run_sampler(pipeline, placement, timers, name, args, texts, seed=1 + repeat)
                    for repeat in range(args.repeats)]
            best = min(runs, key=lambda r: r["total_s"] - r["forward_s"])
            best["ratio"] = best["total_s"] / best["forward_s"]
            best["overhead_ms_per_forward"] = (best["total_s"] - best["forward_s"]) * 1000 / max(best["forwards"], 1)
            parts = "  ".join(f"{key} {value * 1000:.1f}" for key, value in best["parts_s"].items())
            print(f"{name:<14}{best['forwards']:>9}{best['total_s']:>10.3f}{best['forward_s']:>11.3f}"
                  f"{best['ratio']:>8.4f}{(best['total_s'] - best['forward_s']) * 1000:>13.1f}"
                  f"{best['overhead_ms_per_forward']:>12.2f}   {parts}", flush=True)
            results.append(best)

    if args.null_network:
        worst = max(results, key=lambda r: r["overhead_ms_per_forward"])
        print(f"largest overhead {worst['overhead_ms_per_forward']:.2f} ms per forward ({worst['sampler']}): the "
              f"ratio stays ≤ {TARGET_RATIO} only while one PixArt forward (batch 2) takes at least "
              f"{worst['overhead_ms_per_forward'] / (TARGET_RATIO - 1):.0f} ms; load average {load_average()}")
    else:
        worst = max(results, key=lambda r: r["ratio"])
        verdict = "within" if worst["ratio"] <= TARGET_RATIO else "ABOVE"
        print(f"worst ratio {worst['ratio']:.4f} ({worst['sampler']}), {verdict} the target {TARGET_RATIO}; "
              f"load average {load_average()}")
    print(json.dumps({"device": str(device), "dtype": str(dtype), "network": "null" if args.null_network else "pixart",
                      "size": args.size, "steps": args.steps, "start": args.start, "results": [_rounded(r) for r in
                                                                                               results]}))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


if __name__ == "__main__":
    main()

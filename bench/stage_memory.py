"""Memory per stage (issue 3) under the ``offload`` and ``gpu`` placement policies: device-resident weights and RSS.

1. Device-resident bytes. What a policy controls is which modules sit on the compute device at a time. The run goes
   through the product's stages (encode → base → transcode → refine → decode, tiny models) with a placement that
   wraps ``MovePlacement("cpu", policy)`` and keeps a ledger of the modules on the compute device: a module enters
   when a stage ``use``s it and leaves when the placement would move it back. On the CPU ``MovePlacement`` moves
   nothing, so the ledger applies its accelerator rule (``offload`` moves a module back to RAM at the end of its
   ``use`` block, ``gpu`` keeps it). T5 is not placed through ``use``: in ``gpu``
   mode its weights are loaded onto the device and stay there; in ``stream`` mode only the largest sub-layer is on it
   while it encodes (what ``make_room`` asks for). The same timeline is then replayed with the byte sizes of the
   real models (PixArt-Sigma-XL, SD1.5 UNet, KL decoder, TAESD transcoder in fp16, CLIP-L in fp32 as the refiner
   loads it, T5-XXL fp8), so the table also shows full-size numbers. Baseline of the ratio: the ``gpu`` policy's peak
   in the same run (offload peak / gpu peak). The claim to check: offload peak = the largest single stage, gpu peak
   = the sum of the stages.
2. Peak RSS per stage: each (stage, policy) runs in a fresh subprocess that loads only that stage's models and runs
   it on synthetic inputs; printed as peak RSS over the process's baseline (interpreter, torch, transformers and
   diffusers imported, files opened but no model loaded); the peak is counted from that baseline on (VmHWM reset
   through /proc/self/clear_refs; where that is refused, the whole process's peak is used and the line says so).
   ``--full-pixart`` runs the base stage with a full-size random PixArt-Sigma file (fp16, ≈ 1.2 GB, cached under
   ``~/.cache/tinybreaker-bench/``, loaded as float32 on the CPU).

    python bench/stage_memory.py                    # both parts, tiny models
    python bench/stage_memory.py --full-pixart      # RSS of the base stage with the full-size PixArt
    python bench/stage_memory.py --skip-rss         # only the device-resident ledger (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from _common import (current_rss_bytes, full_size_pixart_file, load_average, peak_rss_bytes,  # noqa: E402
                     reset_peak_rss, tiny_model_files)

STAGES = ("encode", "base", "transcode", "refine", "decode")
POLICIES = ("offload", "gpu")
PROMPT, NEGATIVE = "a photo of a red cat on a sofa", "blurry, low quality"
T5_ROLE = "T5TextEncoder"
MB = 1e6


def _stage_params():
    from tinybreaker_ext.stage_params import StageParams

    # the built-in style's windows (styles_v03.ini), shortened where only memory matters
    base = StageParams(sampler="uni_pc", scheduler="simple", steps=12, steps_start=2, cfg=3.4)
    refine = StageParams(sampler="deis", scheduler="ddim_uniform", steps=11, steps_start=6, cfg=2.0)
    return base, refine


def _pipelines(device, dtype, checkpoint: str | None = None):
    from tinybreaker_ext.pipeline import TinyBreakerPipeline
    from tinybreaker_ext.standalone import EmbeddedRefiner

    tiny = tiny_model_files()
    search = {"allow_download": False}
    pipeline = TinyBreakerPipeline(checkpoint or tiny["checkpoint"], tiny["t5"], device=device, dtype=dtype,
                                   tokenizer_path=tiny["t5_tokenizer"], tokenizer_search=search)
    refiner = None
    if pipeline.is_tinybreaker:
        refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=tiny["clip_tokenizer"], tokenizer_search=search)
    return pipeline, refiner


# --------------------------------------------------------------------------------------------- 1. device ledger
class DeviceLedger:
    """The timeline of modules entering and leaving the compute device, stage by stage."""

    def __init__(self):
        self.events: list[tuple[str, object, str | None, int]] = []  # (kind, stage or module key, role, bytes)

    def begin(self, stage: str) -> None:
        self.events.append(("begin", stage, None, 0))

    def enter(self, key: int, role: str, size: int) -> None:
        self.events.append(("enter", key, role, size))

    def leave(self, key: int) -> None:
        self.events.append(("leave", key, None, 0))

    def transient(self, role: str, size: int) -> None:
        """Bytes on the device only for a moment inside the stage (T5 stream mode's upcast sub-layer)."""
        self.events.append(("transient", None, role, size))

    def replay(self, sizes: dict[str, int] | None = None, isolate: bool = False):
        """(peak bytes per stage, bytes per role each stage uses), with the recorded bytes or ``sizes`` per role;
        ``isolate`` forgets what earlier stages left on the device (the stage's own need)."""
        resident: dict[object, int] = {}
        peaks: dict[str, int] = {}
        used: dict[str, dict[str, int]] = {}
        stage = None
        for kind, key, role, size in self.events:
            size = sizes[role] if (sizes is not None and role is not None) else size
            extra = 0
            if kind == "begin":
                stage = key
                used[stage] = {}
                if isolate:
                    resident.clear()
            elif kind == "enter":
                resident[key] = size
                used[stage][role] = size
            elif kind == "leave":
                resident.pop(key, None)
            else:
                extra = size
                used[stage][role] = max(used[stage].get(role, 0), size)
            peaks[stage] = max(peaks.get(stage, 0), sum(resident.values()) + extra)
        return peaks, used

    def placed_bytes(self, sizes: dict[str, int] | None = None) -> int:
        """Bytes of every module that was ever put on the device (transient sub-layers excluded)."""
        placed = {role: (sizes[role] if sizes is not None else size)
                  for kind, _key, role, size in self.events if kind == "enter"}
        return sum(placed.values())


def module_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class LedgerPlacement:
    """``MovePlacement(device, policy)`` plus a ledger of what it would leave on an accelerator."""

    def __init__(self, device, policy: str, ledger: DeviceLedger):
        from tinybreaker_ext.placement import MovePlacement

        self.inner = MovePlacement(device, policy)
        self.device = self.inner.device
        self.policy = self.inner.policy
        self.ledger = ledger

    @contextlib.contextmanager
    def use(self, module):
        with self.inner.use(module) as placed:
            self.ledger.enter(id(module), type(module).__name__, module_bytes(module))
            yield placed
        # MovePlacement's rule on an accelerator (on the CPU it moves nothing): offload sends the module back.
        if self.policy == "offload":
            self.ledger.leave(id(module))

    def make_room(self, bytes_needed: int) -> None:
        self.inner.make_room(bytes_needed)


def run_ledger(policy: str, t5_mode: str, size: int) -> DeviceLedger:
    """All five stages through the product's code (tiny models, CPU), with the ledger placement."""
    pipeline, refiner = _pipelines(torch.device("cpu"), torch.float32)
    base_params, refine_params = _stage_params()
    ledger = DeviceLedger()
    placement = LedgerPlacement("cpu", policy, ledger)

    ledger.begin("encode")
    for text in (PROMPT, NEGATIVE):
        pipeline.encode(text, placement=placement, t5_mode=t5_mode)
    encoder = pipeline.t5(t5_mode)  # the cached encoder: its mode says where its weights live
    if encoder.mode == "gpu":  # loaded onto the device and kept there, whatever the policy
        ledger.enter(id(encoder), T5_ROLE, encoder.storage_bytes())
    elif encoder.mode == "stream":
        ledger.transient(T5_ROLE, encoder.device_bytes())
    ledger.begin("base")
    latent = pipeline.base([PROMPT], [NEGATIVE], base_params, width=size, height=size, seeds=[1],
                           placement=placement, t5_mode=t5_mode)
    ledger.begin("transcode")
    latent = pipeline.transcode(latent, placement=placement)
    ledger.begin("refine")
    latent = refiner.refine(latent, [PROMPT], [NEGATIVE], refine_params, seeds=[1], placement=placement)
    ledger.begin("decode")
    images = refiner.decode(latent, quality="high_quality", placement=placement)
    if not torch.isfinite(images).all():
        raise SystemExit("the decoded images are not finite")
    return ledger


def full_size_bytes(t5_mode: str, dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Bytes per role for the real models (shapes from the builders' full-size layouts; no weights allocated)."""
    from builders.pixart import FULL_SIZE, pixart_state_dict
    from builders.sd1 import clip_l_full_meta_state_dict, kl_decoder_full_meta_state_dict
    from builders.sd1 import sd1_unet_full_meta_state_dict
    from builders.t5 import T5_XXL_SHAPES, t5_block_shapes
    from builders.taesd import transcoder_state_dict

    def numel(state_dict) -> int:
        return sum(value.numel() for value in state_dict.values() if value.is_floating_point())

    width = torch.tensor([], dtype=dtype).element_size()
    sizes = {
        "PixArtSigma": numel(pixart_state_dict(**FULL_SIZE, device="meta")) * width,
        "Transcoder": numel(transcoder_state_dict()) * width,
        "CLIPTextModel": numel(clip_l_full_meta_state_dict()) * 4,  # EmbeddedRefiner loads CLIP in float32
        "SD1Refiner": numel(sd1_unet_full_meta_state_dict()) * width,
        "KLDecoder": numel(kl_decoder_full_meta_state_dict()) * width,
    }
    widths = {k: T5_XXL_SHAPES[k] for k in ("d_model", "num_heads", "d_kv", "d_ff", "num_buckets")}
    groups: dict[str, int] = {}
    for block in range(T5_XXL_SHAPES["num_layers"]):
        for key, shape in t5_block_shapes(block, **widths).items():
            group = ".".join(key.split(".")[:5])  # encoder.block.N.layer.M: what stream mode swaps in at once
            groups[group] = groups.get(group, 0) + torch.Size(shape).numel()
    d_model = T5_XXL_SHAPES["d_model"]
    t5_fp8 = sum(groups.values()) + T5_XXL_SHAPES["vocab_size"] * d_model + d_model
    sizes[T5_ROLE] = t5_fp8 if t5_mode == "gpu" else max(groups.values()) * 4  # stream: one fp32 sub-layer
    return sizes


def print_ledgers(t5_modes: list[str], size: int) -> dict:
    summary = {}
    for t5_mode in t5_modes:
        ledgers = {policy: run_ledger(policy, t5_mode, size) for policy in POLICIES}
        full = full_size_bytes(t5_mode)
        print(f"\nDevice-resident weights per stage, T5 mode '{t5_mode}', in MB. 'alone' = the stage's own peak "
              f"(nothing left from earlier stages); offload / gpu = peak with that policy in a whole run. Full size = "
              f"real models (fp16; CLIP fp32; T5-XXL fp8 in gpu mode, one fp32 sub-layer in stream mode).")
        print(f"{'stage':<10}{'modules':<36}{'alone':>9}{'offload':>9}{'gpu':>9}   | full size:{'alone':>9}"
              f"{'offload':>9}{'gpu':>9}")
        tables = {}
        for label, sizes in (("tiny", None), ("full", full)):
            alone, used = ledgers["offload"].replay(sizes, isolate=True)
            tables[label] = {"alone": alone, "used": used, "offload": ledgers["offload"].replay(sizes)[0],
                             "gpu": ledgers["gpu"].replay(sizes)[0], "placed": ledgers["gpu"].placed_bytes(sizes)}
        for stage in STAGES:
            roles = ", ".join(tables["tiny"]["used"][stage]) or "-"
            cells = [f"{t['alone'][stage] / MB:>9.3f}{t['offload'][stage] / MB:>9.3f}{t['gpu'][stage] / MB:>9.3f}"
                     for t in (tables["tiny"], tables["full"])]
            print(f"{stage:<10}{roles:<36}{cells[0]}   |           {cells[1]}")
        for label, table in tables.items():
            offload_peak, gpu_peak = max(table["offload"].values()), max(table["gpu"].values())
            largest, everything = max(table["alone"].values()), table["placed"]
            print(f"  {label:<4}: offload peak {offload_peak / MB:.3f} MB vs largest single stage {largest / MB:.3f} MB "
                  f"({'equal' if offload_peak == largest else 'NOT equal'}); gpu peak {gpu_peak / MB:.3f} MB vs all "
                  f"modules placed on it {everything / MB:.3f} MB ({'equal' if gpu_peak == everything else 'NOT equal'}); "
                  f"ratio offload/gpu {offload_peak / gpu_peak:.3f}")
            summary[f"{t5_mode}/{label}"] = {"offload_peak": offload_peak, "gpu_peak": gpu_peak,
                                             "ratio": round(offload_peak / gpu_peak, 4),
                                             "largest_stage_alone": largest, "sum_of_modules": everything}
    return summary


# ------------------------------------------------------------------------------------------------- 2. peak RSS
def child(stage: str, policy: str, size: int, full_pixart: bool) -> None:
    from builders.tinybreaker_files import TEXT_WIDTH
    from tinybreaker_ext.placement import MovePlacement

    base_params, refine_params = _stage_params()
    if stage == "base":
        base_params = base_params.copy(steps_start=base_params.steps - 2)  # two steps: the peak does not grow
    checkpoint = full_size_pixart_file() if (full_pixart and stage == "base") else None
    pipeline, refiner = _pipelines(torch.device("cpu"), torch.float32, checkpoint)
    placement = MovePlacement("cpu", policy)
    _import_model_libraries()  # part of the baseline: the stage's models, not the libraries' code, are measured
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, size // 8, size // 8, generator=generator)
    baseline = current_rss_bytes()
    windowed = reset_peak_rss()  # so that import-time peaks before the baseline do not count
    with torch.no_grad():
        if stage == "encode":
            for text in (PROMPT, NEGATIVE):
                pipeline.encode(text, placement=placement)
        elif stage == "base":
            width = 4096 if checkpoint else TEXT_WIDTH
            pipeline.encode = lambda text, **_: torch.randn(1, 77, width, generator=generator)  # T5 is not this stage
            pipeline.base([PROMPT], [NEGATIVE], base_params, width=size, height=size, seeds=[1], placement=placement)
        elif stage == "transcode":
            pipeline.transcode(latent, placement=placement)
        elif stage == "refine":
            refiner.refine(latent, [PROMPT], [NEGATIVE], refine_params, seeds=[1], placement=placement)
        else:
            refiner.decode(latent, quality="high_quality", placement=placement)
    print(json.dumps({"stage": stage, "policy": policy, "baseline": baseline, "peak": peak_rss_bytes(),
                      "peak_since_baseline": windowed}))


def _import_model_libraries() -> None:
    import transformers  # noqa: F401
    from transformers import CLIPTextModel, T5EncoderModel  # noqa: F401

    try:  # diffusers builds the embedded refiner's UNet and KL decoder; absent on A1111
        from diffusers import UNet2DConditionModel  # noqa: F401
        from diffusers.loaders import single_file_utils  # noqa: F401
        from diffusers.models.autoencoders import vae  # noqa: F401
    except ImportError:
        pass


def print_rss(size: int, full_pixart: bool, stages: list[str]) -> dict:
    print(f"\nPeak RSS per stage, fresh process each, {size}×{size} px (MB above the process baseline; absolute peak "
          f"in brackets){'; base stage with the full-size PixArt' if full_pixart else ''}")
    print(f"{'stage':<10}{'offload':>22}{'gpu':>22}{'ratio':>8}")
    results = {}
    for stage in stages:
        row = {}
        for policy in POLICIES:
            command = [sys.executable, os.path.abspath(__file__), "--child", stage, "--policy", policy,
                       "--size", str(size)] + (["--full-pixart"] if full_pixart else [])
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row[policy] = json.loads(output.strip().splitlines()[-1])
        above = {policy: row[policy]["peak"] - row[policy]["baseline"] for policy in POLICIES}
        cells = "".join(f"{above[p] / MB:>11.1f} ({row[p]['peak'] / MB:>7.1f})" for p in POLICIES)
        note = "" if all(row[p]["peak_since_baseline"] for p in POLICIES) else "  (process peak: no VmHWM reset)"
        print(f"{stage:<10}{cells}{above['offload'] / max(above['gpu'], 1):>8.3f}{note}", flush=True)
        results[stage] = {policy: {"above_baseline": above[policy], "peak": row[policy]["peak"]}
                          for policy in POLICIES}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image side in px for the RSS runs (default 512)")
    parser.add_argument("--ledger-size", type=int, default=64, help="image side for the ledger run (default 64)")
    parser.add_argument("--t5-modes", default="gpu,stream", help="T5 modes for the ledger (default gpu,stream)")
    parser.add_argument("--full-pixart", action="store_true", help="base-stage RSS with the full-size PixArt")
    parser.add_argument("--stages", default=",".join(STAGES), help="stages for the RSS runs (default: all)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-ledger", action="store_true")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.policy, args.size, args.full_pixart)
        return
    print(f"torch threads {torch.get_num_threads()}; load average {load_average()}")
    summary = {}
    if not args.skip_ledger:
        summary["device_resident"] = print_ledgers([m.strip() for m in args.t5_modes.split(",") if m.strip()],
                                                   args.ledger_size)
    if not args.skip_rss:
        stages = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
        summary["rss"] = print_rss(args.size, args.full_pixart, stages)
    print(f"\nload average {load_average()}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

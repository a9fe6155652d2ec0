"""Low-memory T5: peak RSS and encode time of GGUF T5-XXL files against the fp8 file, and their embedding error.

Files: a FULL-SIZE random T5-XXL encoder (24 blocks), each tensor drawn from its own seeded generator (any tensor can
be regenerated alone) at the scales of T5's own initialisation (the test builders' values, with the query projection
scaled by d_kv^-0.5 as in transformers' ``_init_weights``: without it the unscaled T5 attention is almost a hard
argmax on random weights, and 24 such blocks turn any rounding into an unrelated embedding), stored three ways in ``~/.cache/tinybreaker-bench/`` (written once, about 13 GB, 20–30 min on
2 cores): fp8 e4m3fn safetensors (4.9 GB), GGUF Q8_0 (5.1 GB) and GGUF Q4_K_M (2.9 GB), the GGUF files in city96's
layout (llama-quantize's per-tensor types; the k-quants by the round-to-nearest quantizer of tests/builders/gguf_files.py,
whose error is a little above llama.cpp's).

Each file is loaded and encodes the same ``--tokens`` token ids in a fresh process, in ``cpu`` mode with
``keep_converted_bytes=0`` (weights stay as stored and are converted/dequantized per sub-layer at every encode: the
low-memory configuration a GGUF file is chosen for) and the compute dtype ``auto`` picks. Printed per file: peak
RSS (VmHWM from process start, interpreter and torch included) / file size (goal ≤ 1.2), the same above the
process's baseline, first and second encode seconds, encode time / the fp8 file's, and the relative embedding error
‖e − e_ref‖ / ‖e_ref‖ against the bf16 reference: transformers' ``T5EncoderModel`` in bfloat16 with the same float32
weights cast to bfloat16, run with each block's weights regenerated and swapped in just before it runs (so 9.5 GB of
bf16 weights never sit in RAM at once).

    python bench/t5_gguf.py                  # full size
    python bench/t5_gguf.py --layers 4       # reduced run (same widths, fewer blocks)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib

import _common  # noqa: F401  (import paths)
from _common import CACHE_DIR, current_rss_bytes, load_average, peak_rss_bytes

import torch  # noqa: E402

from builders.t5 import T5_XXL_SHAPES, random_t5_value, t5_state_dict  # noqa: E402
from t5_memory import _shapes, write_random_fp8_t5  # noqa: E402

FILES = ("fp8", "Q8_0", "Q4_K_M")


def value_of(key: str, layers: int) -> torch.Tensor:
    """The float32 value of tensor ``key``, from a generator seeded by the key alone."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    value = random_t5_value(key, _shapes(layers)[key], generator)
    return value * T5_XXL_SHAPES["d_kv"] ** -0.5 if key.endswith("SelfAttention.q.weight") else value


def file_path(kind: str, layers: int) -> str:
    suffix = "" if layers == T5_XXL_SHAPES["num_layers"] else f"_{layers}layers"
    name = "fp8_e4m3fn.safetensors" if kind == "fp8" else f"{kind}.gguf"
    return os.path.join(CACHE_DIR, f"t5xxl_t5init_random{suffix}_{name}")


def write_file(kind: str, layers: int) -> str:
    path = file_path(kind, layers)
    if os.path.exists(path):
        return path
    print(f"writing {path} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    partial = path + ".part"
    if kind == "fp8":
        write_random_fp8_t5(partial, layers, value_of=lambda key: value_of(key, layers))
        os.replace(partial, path)  # write_random_fp8_t5 wrote partial + ".part" first
    else:
        from builders.gguf_files import write_gguf_t5_streaming

        write_gguf_t5_streaming(partial, _shapes(layers), lambda key: value_of(key, layers), kind)
        os.replace(partial, path)
    print(f"  written in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return path


def token_ids(count: int) -> torch.Tensor:
    return torch.randint(0, 32000, (1, count), generator=torch.Generator().manual_seed(0))


def child_product(args) -> dict:
    from tinybreaker_ext.files.classify import FileKind, open_model_file
    from tinybreaker_ext.models.t5_encoder import load_t5_encoder

    ids = token_ids(args.tokens)
    baseline = current_rss_bytes()
    start = time.perf_counter()
    file, _info = open_model_file(args.path, FileKind.T5_ENCODER)
    with file:
        encoder = load_t5_encoder(file, mode="cpu", keep_converted_bytes=0)
    load_seconds = time.perf_counter() - start
    times = []
    for _ in range(2):
        start = time.perf_counter()
        out = encoder.encode(ids)
        times.append(time.perf_counter() - start)
    torch.save(out, args.output)
    peak, size = peak_rss_bytes(), os.path.getsize(args.path)
    return {"file": args.kind, "file_gb": round(size / 1e9, 3), "compute_dtype": str(encoder.compute_dtype)[6:],
            "load_s": round(load_seconds, 1), "first_encode_s": round(times[0], 2),
            "encode_s": round(times[1], 2), "peak_rss_gb": round(peak / 1e9, 3),
            "peak_rss_ratio": round(peak / size, 3), "over_baseline_ratio": round((peak - baseline) / size, 3)}


def child_reference(args) -> dict:
    """transformers' T5EncoderModel in bfloat16, each block's weights generated just before it runs."""
    from transformers import T5EncoderModel

    from tinybreaker_ext.models.t5_encoder import infer_t5_config

    config = infer_t5_config(t5_state_dict(**dict(T5_XXL_SHAPES, num_layers=args.layers), device="meta"))
    with torch.device("meta"):
        model = T5EncoderModel(config)
    model.eval()

    def load(module: torch.nn.Module, prefix: str) -> None:
        weights = {name: value_of(prefix + name, args.layers).to(torch.bfloat16)
                   for name, _ in module.named_parameters()}
        module.load_state_dict(weights, assign=True, strict=True)

    def unload(module: torch.nn.Module, _args, _output) -> None:
        module.to("meta")  # returns the module: a hook must return None to keep the block's output

    for index, block in enumerate(model.encoder.block):
        block.register_forward_pre_hook(lambda module, _args, prefix=f"encoder.block.{index}.": load(module, prefix))
        block.register_forward_hook(unload)
    load(model.encoder.final_layer_norm, "encoder.final_layer_norm.")
    embeds = value_of("shared.weight", args.layers).to(torch.bfloat16)[token_ids(args.tokens)]
    start = time.perf_counter()
    with torch.no_grad():
        out = model(inputs_embeds=embeds)[0].float()
    torch.save(out, args.output)
    return {"file": "reference (transformers bf16)", "encode_s": round(time.perf_counter() - start, 2)}


def run_child(args, kind: str, output: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--layers", str(args.layers),
               "--tokens", str(args.tokens), "--output", output]
    if kind != "reference":
        command += ["--path", file_path(kind, args.layers)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=T5_XXL_SHAPES["num_layers"])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--child", choices=FILES + ("reference",), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.kind = args.child
        result = child_reference(args) if args.child == "reference" else child_product(args)
        print(json.dumps(result))
        return
    for kind in FILES:
        write_file(kind, args.layers)
    print(f"{args.layers} blocks, {args.tokens} tokens, threads {torch.get_num_threads()}, "
          f"load average {load_average()}", flush=True)
    outputs = os.path.join(CACHE_DIR, "t5_gguf_outputs")
    os.makedirs(outputs, exist_ok=True)
    rows = {}
    for kind in ("reference",) + FILES:
        rows[kind] = run_child(args, kind, os.path.join(outputs, f"{kind}_{args.layers}.pt"))
        print("  " + json.dumps(rows[kind]), flush=True)
    reference = torch.load(os.path.join(outputs, f"reference_{args.layers}.pt"))
    print(f"{'file':8s} {'GB':>6s} {'peak RSS/file':>14s} {'above baseline':>15s} {'encode s':>9s} "
          f"{'time/fp8':>9s} {'rel. error vs bf16':>19s}")
    for kind in FILES:
        row = rows[kind]
        out = torch.load(os.path.join(outputs, f"{kind}_{args.layers}.pt"))
        error = ((out - reference).norm() / reference.norm()).item()
        print(f"{kind:8s} {row['file_gb']:6.2f} {row['peak_rss_ratio']:14.3f} {row['over_baseline_ratio']:15.3f} "
              f"{row['encode_s']:9.1f} {row['encode_s'] / rows['fp8']['encode_s']:9.2f} {error:19.4f}")
    print(f"load average at the end {load_average()}")


if __name__ == "__main__":
    main()

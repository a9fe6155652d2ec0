"""Memory and speed of the fp8 T5-XXL encoder: peak RSS as a ratio to the file size, encode times
(docs/numerics.md "T5 encoder compute").

Writes a FULL-SIZE random fp8 T5-XXL encoder once (default ``~/.cache/tinybreaker-bench/t5xxl_fp8_random.safetensors``,
about 4.9 GB, outside the repository), then loads it in a fresh subprocess through the product's reader and loader
and prints one JSON line with:
  - ``peak_rss_ratio``: peak resident memory of that process / file size (target ≤ 1.2),
  - ``rss_over_baseline_ratio``: the same without the interpreter + torch baseline,
  - per-prompt encode seconds with a cold cache (T5 runs) and a warm cache (``PromptEmbeddingCache`` hit).

The encoder keeps its weights as stored (``keep_converted_bytes=0``, what the default budget does on a machine short
of RAM); ``--keep-converted`` uses the default budget instead, which converts weights to the compute dtype once when
free RAM allows (faster encodes, about twice the memory for fp8 → bf16; see t5_speed.py).

    python bench/t5_memory.py                 # full size (24 blocks)
    python bench/t5_memory.py --layers 4      # reduced run (same widths, fewer blocks)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import torch  # noqa: E402

from builders.t5 import T5_XXL_SHAPES, random_t5_value, t5_block_shapes, train_tiny_t5_tokenizer  # noqa: E402

CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "tinybreaker-bench")
PROMPTS = [
    "a photo of an old stone castle on a hill at sunset, warm light, highly detailed",
    "a (red:1.3) house by the lake, ((masterpiece)), (blurry:0.7), rain, reflections",
]


def ensure_random_fp8_t5(path: str, layers: int) -> None:
    """Writes the random fp8 T5 file at ``path`` unless it is already there (written once, reused by every run)."""
    if os.path.exists(path):
        return
    print(f"writing {path} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    write_random_fp8_t5(path, layers)
    print(f"  written in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def default_path(layers: int) -> str:
    suffix = "" if layers == T5_XXL_SHAPES["num_layers"] else f"_{layers}layers"
    return os.path.join(CACHE_DIR, f"t5xxl_fp8_random{suffix}.safetensors")


def _shapes(layers: int) -> dict[str, tuple[int, ...]]:
    widths = {k: T5_XXL_SHAPES[k] for k in ("d_model", "num_heads", "d_kv", "d_ff", "num_buckets")}
    shapes = {"shared.weight": (T5_XXL_SHAPES["vocab_size"], T5_XXL_SHAPES["d_model"])}
    for i in range(layers):
        shapes.update(t5_block_shapes(i, **widths))
    shapes["encoder.final_layer_norm.weight"] = (T5_XXL_SHAPES["d_model"],)
    return shapes


def write_random_fp8_t5(path: str, layers: int, seed: int = 0, value_of=None) -> None:
    """Streams the file tensor by tensor (header first, then raw bytes) so RAM stays at one tensor.
    Hand-written because safetensors' save_file needs every tensor in memory at once. ``value_of(key)`` gives a
    tensor's float32 values (default: one generator seeded with ``seed``, drawn in key order)."""
    shapes = _shapes(layers)
    header: dict[str, object] = {"__metadata__": {"format": "pt", "note": "random weights for benchmarks"}}
    offset = 0
    for key, shape in shapes.items():
        size = 1
        for dim in shape:
            size *= dim
        header[key] = {"dtype": "F8_E4M3", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    generator = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".part"
    with open(partial, "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for key, shape in shapes.items():
            value = (value_of(key) if value_of else random_t5_value(key, shape, generator)).to(torch.float8_e4m3fn)
            f.write(value.view(torch.uint8).numpy().data)
    os.replace(partial, path)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args) -> None:
    from tinybreaker_ext.files.safetensors_file import open_safetensors
    from tinybreaker_ext.models.t5_encoder import load_t5_encoder
    from tinybreaker_ext.models.t5_tokenizer import T5PromptTokenizer
    from tinybreaker_ext.text_encoding import PromptEmbeddingCache, encode_t5_prompt

    tokenizer = T5PromptTokenizer.from_dir(args.tokenizer)
    baseline = _rss_bytes()
    start = time.perf_counter()
    with open_safetensors(args.path) as file:
        encoder = load_t5_encoder(file, mode=args.mode, device=args.device,
                                  keep_converted_bytes=None if args.keep_converted else 0)
    load_seconds = time.perf_counter() - start
    after_load = _rss_bytes()
    cache = PromptEmbeddingCache()
    cold, warm = [], []
    for prompt in PROMPTS:
        start = time.perf_counter()
        out = encode_t5_prompt(encoder, tokenizer, prompt, cache=cache)
        cold.append(round(time.perf_counter() - start, 3))
        assert out.shape[-1] == 4096
    for prompt in PROMPTS:
        start = time.perf_counter()
        encode_t5_prompt(encoder, tokenizer, prompt, cache=cache)
        warm.append(round(time.perf_counter() - start, 6))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    size = os.path.getsize(args.path)
    print(json.dumps({
        "file_gb": round(size / 1e9, 3), "mode": encoder.mode, "threads": torch.get_num_threads(),
        "storage_gb": round(encoder.storage_bytes() / 1e9, 3), "load_s": round(load_seconds, 1),
        "baseline_rss_gb": round(baseline / 1e9, 3), "rss_after_load_gb": round(after_load / 1e9, 3),
        "peak_rss_gb": round(peak / 1e9, 3), "peak_rss_ratio": round(peak / size, 3),
        "rss_over_baseline_ratio": round((peak - baseline) / size, 3),
        "tokens": [len(tokenizer.tokenize_with_weights(p)[0]) for p in PROMPTS],
        "encode_cold_s": cold, "encode_warm_s": warm,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=T5_XXL_SHAPES["num_layers"])
    parser.add_argument("--path", default=None, help="random fp8 T5 file (written if missing)")
    parser.add_argument("--mode", default="auto", choices=["auto", "gpu", "cpu", "stream"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--keep-converted", action="store_true", help="use the default conversion budget")
    parser.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.path = args.path or default_path(args.layers)
    if args.child:
        child(args)
        return
    ensure_random_fp8_t5(args.path, args.layers)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        train_tiny_t5_tokenizer(tokenizer_dir)  # ids < 200 fit any T5 vocabulary; timings do not depend on them
        command = [sys.executable, os.path.abspath(__file__), "--child", "--path", args.path, "--mode", args.mode,
                   "--device", args.device, "--tokenizer", tokenizer_dir] + (["--keep-converted"] * args.keep_converted)
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

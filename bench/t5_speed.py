"""T5 encode time and peak RSS of the product against transformers' own ``T5EncoderModel`` on the same file.

Both sides read the same FULL-WIDTH random fp8 T5-XXL file with fewer blocks (default 12 blocks, written once to
``~/.cache/tinybreaker-bench/``): transformers through ``T5EncoderModel.from_pretrained(folder, dtype=...)`` (a
folder holding ``config.json`` and a link to the file), the product through ``load_t5_encoder`` in ``cpu`` mode.
Each (side, dtype) runs in a fresh process that loads, encodes ``--tokens`` random token ids once (warm-up) and then
``--repeats`` times, and reports the median encode time and its peak RSS (VmHWM, from process start). The sides
alternate, twice each (``--rounds``), so drift of a shared machine hits both; ratios are product / transformers.

The product runs twice per dtype: ``product`` keeps every weight converted to the compute dtype (converted once at
load: what the default budget of ``t5_policy.conversion_budget`` does when free RAM beyond its 6 GiB reserve covers
the converted size) and ``product_lean`` keeps none (``keep_converted_bytes=0``: fp8 stays in RAM and is converted
at every encode, the least memory; what the default does on a machine short of RAM).

    python bench/t5_speed.py                         # 12 blocks, 120 tokens, bf16 and fp32 (about 10 min on 2 cores)
    python bench/t5_speed.py --dtypes bfloat16 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _common  # noqa: F401  (import paths)
from _common import CACHE_DIR, load_average, peak_rss_bytes

import torch  # noqa: E402

from tinybreaker_ext.models.t5_policy import available_ram_bytes  # noqa: E402

from t5_memory import default_path, ensure_random_fp8_t5  # noqa: E402

SIDES = ("transformers", "product", "product_lean")


def transformers_folder(path: str, layers: int) -> str:
    """A from_pretrained folder for the random file: its config and a link to the weights."""
    from builders.t5 import T5_XXL_SHAPES, t5_state_dict
    from tinybreaker_ext.models.t5_encoder import infer_t5_config

    folder = os.path.join(CACHE_DIR, f"t5xxl_fp8_random_{layers}layers_hf")
    os.makedirs(folder, exist_ok=True)
    infer_t5_config(t5_state_dict(**dict(T5_XXL_SHAPES, num_layers=layers), device="meta")).save_pretrained(folder)
    link = os.path.join(folder, "model.safetensors")
    if not os.path.islink(link):
        os.symlink(path, link)
    return folder


def child(args) -> None:
    dtype = getattr(torch, args.dtype)
    ids = torch.randint(0, 32000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    ram_at_start = available_ram_bytes() or 0
    start = time.perf_counter()
    if args.side == "transformers":
        from transformers import T5EncoderModel

        try:
            model = T5EncoderModel.from_pretrained(args.folder, dtype=dtype)
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = T5EncoderModel.from_pretrained(args.folder, torch_dtype=dtype)
        model.eval()

        def encode():
            with torch.no_grad():
                return model(input_ids=ids)[0].float()
    else:
        from tinybreaker_ext.files.safetensors_file import open_safetensors
        from tinybreaker_ext.models.t5_encoder import load_t5_encoder

        budget = 0 if args.side == "product_lean" else 1 << 50  # none / all
        with open_safetensors(args.path) as file:
            encoder = load_t5_encoder(file, mode="cpu", compute_dtype=dtype, keep_converted_bytes=budget)
        encode = lambda: encoder.encode(ids)  # noqa: E731
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    first = encode()
    first_seconds = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = encode()
        times.append(time.perf_counter() - start)
    assert torch.equal(out, first)
    torch.save(out, args.output)
    print(json.dumps({"side": args.side, "dtype": args.dtype, "ram_available_gb": round(ram_at_start / 1e9, 1),
                      "load_s": round(load_seconds, 2),
                      "first_s": round(first_seconds, 3), "encode_s": round(statistics.median(times), 3),
                      "peak_rss_gb": round(peak_rss_bytes() / 1e9, 3)}))


def run(args, side: str, dtype: str, output: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--side", side, "--dtype", dtype,
               "--path", args.path, "--folder", args.folder, "--tokens", str(args.tokens),
               "--repeats", str(args.repeats), "--output", output]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--path", default=None, help="random fp8 T5 file (written if missing)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.path = args.path or default_path(args.layers)
    if args.child:
        child(args)
        return
    ensure_random_fp8_t5(args.path, args.layers)
    args.folder = transformers_folder(args.path, args.layers)
    print(f"file {args.path} ({os.path.getsize(args.path) / 1e9:.2f} GB), {args.layers} blocks, {args.tokens} tokens, "
          f"threads {torch.get_num_threads()}, load average {load_average()}")
    outputs = os.path.join(CACHE_DIR, "t5_speed_outputs")
    os.makedirs(outputs, exist_ok=True)
    for dtype in args.dtypes.split(","):
        rows = {side: [] for side in SIDES}
        for _ in range(args.rounds):
            for side in SIDES:
                rows[side].append(run(args, side, dtype, os.path.join(outputs, f"{side}_{dtype}.pt")))
                print("  " + json.dumps(rows[side][-1]), flush=True)
        reference = torch.load(os.path.join(outputs, f"transformers_{dtype}.pt"))
        base_time = statistics.median(r["encode_s"] for r in rows["transformers"])
        base_rss = statistics.median(r["peak_rss_gb"] for r in rows["transformers"])
        for side in SIDES[1:]:
            out = torch.load(os.path.join(outputs, f"{side}_{dtype}.pt"))
            error = ((out - reference).norm() / reference.norm()).item()
            time_ratio = statistics.median(r["encode_s"] for r in rows[side]) / base_time
            rss_ratio = statistics.median(r["peak_rss_gb"] for r in rows[side]) / base_rss
            print(f"{dtype:9s} {side:13s} encode time / transformers {time_ratio:.3f}   "
                  f"peak RSS / transformers {rss_ratio:.3f}   bit-identical {torch.equal(out, reference)}   "
                  f"relative error {error:.2e}")
    print(f"load average at the end {load_average()}")


if __name__ == "__main__":
    main()

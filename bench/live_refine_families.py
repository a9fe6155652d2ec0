"""The refine time of an SDXL checkpoint against an SD1 checkpoint at equal steps, on one live WebUI (same machine).

    python bench/live_refine_families.py --url http://127.0.0.1:7865 --sd1 random_sd15 --sdxl random_sdxl \\
        [--size 256] [--steps 4] [--repeats 2]

For each checkpoint (switched through /sdapi/v1/options, then put back): one warm-up request, then per repeat a
TinyBreaker request with ``--steps`` refine steps and one with the refine off (detail level none), same prompt, seed
and size, so the base (cached), the decode and the request overhead cancel; refine time = the difference of the
fastest of each. Prints both refine times and the SDXL / SD1 ratio (the baseline is the SD1 refine of the same run).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request


def call(url: str, method: str, path: str, body: dict | None, timeout: float) -> dict:
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def model_title(url: str, name: str, timeout: float) -> str:
    for model in call(url, "GET", "/sdapi/v1/sd-models", None, timeout):
        if name.lower() in f"{model['title']} {model['model_name']}".lower():
            return model["title"]
    raise SystemExit(f"no checkpoint matching {name!r} on the host")


def timed_request(url: str, args: dict, size: int, timeout: float) -> float:
    body = {"prompt": "a red cube on a table", "negative_prompt": "blurry", "steps": 4, "width": size,
            "height": size, "seed": 7, "sampler_name": "Euler", "cfg_scale": 5,
            "alwayson_scripts": {"TinyBreaker": {"args": [args]}}}
    start = time.perf_counter()
    call(url, "POST", "/sdapi/v1/txt2img", body, timeout)
    return time.perf_counter() - start


def refine_seconds(url: str, size: int, steps: int, repeats: int, timeout: float) -> tuple[float, float, float]:
    base = {"enabled": True, "style": "PHOTO", "base_steps": 4}
    with_refine = {**base, "refine_steps": steps}
    without = {**base, "detail_level": -10}
    timed_request(url, with_refine, size, timeout)  # warm-up: loads and caches
    on = min(timed_request(url, with_refine, size, timeout) for _ in range(repeats))
    off = min(timed_request(url, without, size, timeout) for _ in range(repeats))
    return on - off, on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--sd1", required=True, help="part of the SD1 checkpoint's name")
    parser.add_argument("--sdxl", required=True, help="part of the SDXL checkpoint's name")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    url = args.url.rstrip("/")
    previous = call(url, "GET", "/sdapi/v1/options", None, args.timeout)["sd_model_checkpoint"]
    results = {}
    try:
        for family, name in (("SD1", args.sd1), ("SDXL", args.sdxl)):
            start = time.perf_counter()
            call(url, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": model_title(url, name, args.timeout)},
                 args.timeout)
            print(f"{family}: checkpoint switch {time.perf_counter() - start:.1f} s", flush=True)
            results[family] = refine_seconds(url, args.size, args.steps, args.repeats, args.timeout)
            refine, on, off = results[family]
            print(f"{family}: refine {refine:.2f} s for {args.steps} steps at {args.size}x{args.size} "
                  f"(request {on:.2f} s with the refine, {off:.2f} s without)", flush=True)
    finally:
        call(url, "POST", "/sdapi/v1/options", {"sd_model_checkpoint": previous}, args.timeout)
    print(f"SDXL / SD1 refine time: {results['SDXL'][0] / results['SD1'][0]:.2f}x")


if __name__ == "__main__":
    main()

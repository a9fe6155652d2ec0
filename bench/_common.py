"""Helpers shared by the benchmarks: import paths, the cache folder, cached model files, memory readings, timers."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, "tests"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

# Big random files live outside the repository and are written once.
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "tinybreaker-bench")
TINY_FOLDER = os.path.join(CACHE_DIR, "tiny_models")
FULL_PIXART_PATH = os.path.join(CACHE_DIR, "pixart_sigma_xl_fp16_random.safetensors")


def tiny_model_files() -> dict[str, str]:
    """Paths of the tiny TinyBreaker files (checkpoint, t5, t5_tokenizer, clip_tokenizer), written on first use and
    again whenever a builder in tests/builders/ has changed since."""
    from builders.tinybreaker_files import write_tiny_model_folder

    builders = os.path.join(ROOT, "tests", "builders")
    fingerprint = max(os.path.getmtime(os.path.join(builders, name)) for name in os.listdir(builders)
                      if name.endswith(".py"))
    marker = os.path.join(TINY_FOLDER, "paths.json")
    if os.path.exists(marker):
        with open(marker) as f:
            saved = json.load(f)
        if saved.get("fingerprint") == fingerprint and all(os.path.exists(p) for p in saved["paths"].values()):
            return saved["paths"]
    paths = write_tiny_model_folder(TINY_FOLDER, prototypes=(1,))
    with open(marker, "w") as f:
        json.dump({"fingerprint": fingerprint, "paths": paths}, f)
    return paths


def full_size_pixart_file() -> str:
    """A full-size PixArt-Sigma file (fp16, random weights, ≈ 1.2 GB) in the cache folder, written once."""
    if not os.path.exists(FULL_PIXART_PATH):
        from builders.common import save_safetensors
        from builders.pixart import FULL_SIZE, pixart_state_dict

        print(f"writing {FULL_PIXART_PATH} ...", file=sys.stderr, flush=True)
        partial = FULL_PIXART_PATH + ".part.safetensors"
        save_safetensors(pixart_state_dict(**FULL_SIZE, dtype=torch.float16), partial)
        os.replace(partial, FULL_PIXART_PATH)
    return FULL_PIXART_PATH


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Starts a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last ``reset_peak_rss`` (VmHWM), or of the whole process (ru_maxrss) without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timers:
    """Seconds and call counts per label; ``wrap`` times a function (synchronizing a CUDA device around it)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    @contextlib.contextmanager
    def measure(self, label: str):
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[label] += time.perf_counter() - start
            self.calls[label] += 1

    def wrap(self, function, label: str):
        def timed(*args, **kwargs):
            with self.measure(label):
                return function(*args, **kwargs)

        return timed


@contextlib.contextmanager
def patched(owner, name: str, replacement):
    """Sets ``owner.name`` for the duration of the block, then restores it."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield original
    finally:
        setattr(owner, name, original)

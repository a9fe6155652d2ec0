"""What the command line reports (generation.run_plan's ``progress``): a status line as each phase starts, a progress
bar for the sampling phases only on a terminal (a pipe or a log file gets plain lines, never ``\\r``), and a summary
with the time of every phase. Everything goes to stderr; stdout carries only the paths of the written images."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, Optional, TextIO

from .files.safetensors_file import bytes_read
from .generation import format_bytes
from .sampling.samplers_common import ProgressCallback


class ConsoleProgress:
    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.stream.isatty()
        self.phases: list[tuple[str, float, int]] = []  # (name, seconds, bytes read)
        self.started = time.monotonic()

    def status(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def warning(self, text: str) -> None:
        print(f"warning: {text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "", steps: int = 0) -> Iterator[Optional[ProgressCallback]]:
        self.status(f"{name}: {detail}" if detail else name)
        bar = None
        if self.bars and steps:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=name, unit="step", leave=False, file=self.stream, dynamic_ncols=True)

        def on_step(step: int, total: int, x, denoised) -> None:
            if bar is not None:
                bar.total = total
                bar.n = step + 1
                bar.refresh()

        started, read_before = time.monotonic(), bytes_read()
        try:
            yield on_step
        finally:
            if bar is not None:
                bar.close()
            self.phases.append((name, time.monotonic() - started, bytes_read() - read_before))

    def summary(self) -> str:
        parts = [f"{name} {seconds:.1f} s" + (f" ({format_bytes(read)} read)" if read else "")
                 for name, seconds, read in self.phases]
        return f"done in {time.monotonic() - self.started:.1f} s: " + ", ".join(parts)

"""Calls the prompt-box logic (javascript/tinybreaker_prompt.js) in Node, many calls per process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

NODE = shutil.which("node")
RUNNER = Path(__file__).with_name("run_logic.js")


def call_many(calls: list[tuple[str, list]]) -> list:
    """Runs `[(function name, args), ...]` in one Node process; returns the values, raising on a JS error."""
    if NODE is None:
        raise RuntimeError("node is not installed")
    payload = json.dumps([{"fn": fn, "args": list(args)} for fn, args in calls])
    done = subprocess.run([NODE, str(RUNNER)], input=payload, capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"node {RUNNER.name} failed ({done.returncode}): {done.stderr.strip()}")
    values = []
    for (fn, args), result in zip(calls, json.loads(done.stdout)):
        if not result["ok"]:
            raise RuntimeError(f"{fn}{tuple(args)!r} raised in JS: {result['error']}")
        values.append(result["value"])
    return values


def call(fn: str, *args):
    return call_many([(fn, list(args))])[0]

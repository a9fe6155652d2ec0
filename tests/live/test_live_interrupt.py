"""Interrupt, Skip and the progress API in each TinyBreaker stage of a real running WebUI: the base (PixArt), the
refine, the Tiny Upscaler and Hires fix on top. Each stops within one step, returns what the host returns for an
interrupted job, leaves the host serving, and the reported progress never moves backwards within a job.

    TINYBREAKER_LIVE_URL=http://127.0.0.1:7860 python -m pytest tests/live/test_live_interrupt.py
"""

from __future__ import annotations

import threading
import time

import pytest

from test_live_webui import BASE_URL, TIMEOUT, call, txt2img

pytestmark = [pytest.mark.live, pytest.mark.skipif(not BASE_URL, reason="TINYBREAKER_LIVE_URL not set")]

SIZE = 256
STOP_SECONDS = float(__import__("os").environ.get("TINYBREAKER_LIVE_STOP_SECONDS", "60"))
# (stage, script args, txt2img overrides, how to know the stage runs: textinfo fragment or job number)
STAGES = [
    ("base", {"base_steps": 100}, {}, "PixArt-Sigma base"),
    ("refine", {"refine_steps": 12, "refine_strength": 0.6}, {}, "TinyBreaker: refine"),
    ("upscaler", {"upscale": True, "upscale_by": 2.0}, {}, "TinyBreaker: upscaler"),
    ("hires", {}, {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_second_pass_steps": 12,
                   "denoising_strength": 0.6}, 2),
]


class Job:
    """A txt2img request in a thread, and the host's progress polled while it runs."""

    def __init__(self, args: dict, **overrides):
        self.result = None
        self.samples: list[dict] = []
        self.thread = threading.Thread(target=self._run, args=(args, overrides), daemon=True)
        self.thread.start()

    def _run(self, args, overrides):
        self.result = txt2img([{"enabled": True, **args}], width=SIZE, height=SIZE, steps=4, **overrides)

    def poll(self) -> dict:
        status, progress = call("GET", "/sdapi/v1/progress?skip_current_image=true")
        assert status == 200, progress
        self.samples.append(progress)
        return progress

    def wait_for(self, marker, timeout: float = TIMEOUT) -> dict:
        started = time.time()
        while time.time() - started < timeout and self.thread.is_alive():
            progress = self.poll()
            state = progress.get("state", {})
            if isinstance(marker, int) and state.get("job_no", 0) >= marker and state.get("job_count", 0) > marker:
                return progress
            # textinfo is a top-level field of the progress answer (ProgressResponse), not part of its state; the
            # previous job's last textinfo stays until the host begins the next job, so only a running job counts
            if isinstance(marker, str) and state.get("job_count", 0) > 0 and \
                    marker in str(progress.get("textinfo") or ""):
                return progress
            time.sleep(0.02)
        pytest.fail(f"the job never reached {marker!r} (last progress: {self.samples[-1:]})")

    def finish(self, timeout: float = TIMEOUT):
        while self.thread.is_alive():
            self.poll()
            self.thread.join(0.2)
        return self.result


def assert_progress_never_goes_back(samples: list[dict]) -> None:
    values = [sample["progress"] for sample in samples if sample.get("state", {}).get("job_count", 0) > 0]
    assert all(later >= earlier - 1e-9 for earlier, later in zip(values, values[1:])), values


@pytest.mark.parametrize("action", ["interrupt", "skip"])
@pytest.mark.parametrize("stage, args, overrides, marker", STAGES, ids=[stage[0] for stage in STAGES])
def test_interrupt_and_skip_stop_each_stage_within_a_step(stage, args, overrides, marker, action):
    job = Job(args, **overrides)
    job.wait_for(marker)
    status, _ = call("POST", f"/sdapi/v1/{action}")
    assert status == 200
    asked = time.time()
    status, result = job.finish()
    assert status == 200, result  # the host's own answer to an interrupted job: what was made so far
    assert result["images"], result
    # Stopped within a step: what is left is at most one step of the stage plus the host's decode at 256 px,
    # far less than the rest of the stage (12-100 steps) would take on a CPU host.
    assert time.time() - asked < STOP_SECONDS, f"{action} took {time.time() - asked:.0f} s to end the job"
    assert_progress_never_goes_back(job.samples)
    status, again = txt2img([{"enabled": True}])  # the host serves, and models are where it expects them
    assert status == 200, again


def test_progress_never_moves_backwards_through_every_stage():
    job = Job({"upscale": True, "upscale_by": 1.5, "base_steps": 20},
              enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=3, denoising_strength=0.5)
    status, result = job.finish()
    assert status == 200, result
    assert len(job.samples) > 3
    assert_progress_never_goes_back(job.samples)

"""Host progress bar, interrupt/skip and live preview for our base stage (the host's sampler does the refine)."""

from __future__ import annotations

from typing import Callable

from ..errors import Cancelled


def claim_job_count(p, base_steps: int, refine_steps: int, upscale: bool = False) -> None:
    """Count our stages as jobs, the way Hires fix counts its second pass, so the progress bar and
    /sdapi/v1/progress stay monotonic. Runs in process(), before the host's p.init()."""
    from modules import shared

    state = shared.state
    if state.processing_has_refined_job_count or is_upscale_rerun(p):
        return  # the gallery's upscale button runs only Hires fix: the host's own count is right
    n_iter = state.job_count if state.job_count != -1 else p.n_iter
    hires = 1 if getattr(p, "enable_hr", False) else 0
    hires_steps = (getattr(p, "hr_second_pass_steps", 0) or p.steps) if hires else 0
    images = max(int(getattr(p, "batch_size", 1)), 1)  # the base stage samples each image of a batch on its own
    shared.total_tqdm.updateTotal((base_steps * images + refine_steps + hires_steps) * n_iter)
    state.job_count = n_iter * (2 + hires + int(upscale))  # base, refine, Hires fix's pass, the Tiny Upscaler
    state.processing_has_refined_job_count = True


def is_upscale_rerun(p) -> bool:
    """The gallery's "upscale" button: the host re-runs only Hires fix on an existing first-pass image."""
    return getattr(p, "firstpass_image", None) is not None or bool(getattr(p, "txt2img_upscale", False))


def stage_callback(label: str, total_steps: int, on_denoised: Callable | None = None, *,
                   counted: bool = True) -> Callable:
    """Drives the host's step and progress bar; raises Cancelled on Interrupt or Skip; previews go to ``on_denoised``
    (never breaking the job). ``counted``: in ``claim_job_count``'s total (not the upscaler's tiles: unknown then)."""
    from modules import shared

    state = shared.state
    state.sampling_steps = total_steps
    state.sampling_step = 0
    state.textinfo = label

    def callback(step: int, total: int, x, denoised) -> None:
        if state.interrupted or state.skipped:
            raise Cancelled("interrupted")
        state.sampling_steps = total
        state.sampling_step = step + 1
        if counted:
            shared.total_tqdm.update()
        if on_denoised is not None:
            try:
                on_denoised(denoised)
            except Exception:  # a preview must never break a generation
                pass

    return callback


def preview_when_due(make_image: Callable) -> Callable:
    """``on_denoised`` for the base stage: ``make_image(denoised)`` when the host's live-preview settings ask."""
    from modules import shared

    def on_denoised(denoised) -> None:
        state = shared.state
        every = getattr(shared.opts, "show_progress_every_n_steps", 10)
        if not getattr(shared.opts, "live_previews_enable", True) or every == -1:
            return
        if state.sampling_step - state.current_image_sampling_step >= every:
            state.assign_current_image(make_image(denoised))
            state.current_image_sampling_step = state.sampling_step

    return on_denoised

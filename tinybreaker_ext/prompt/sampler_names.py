"""A1111-style sampler labels for infotext, from ComfyUI sampler and scheduler names
(docs/numerics.md "Infotext and sampler names").

First the legacy combined names A1111 knows ("DPM++ 2M Karras", "Euler a"); otherwise "<sampler> <scheduler>"
from the two maps below. Samplers A1111 lacks keep a readable name (DEIS, iPNDM, ...); unknown ones read "Euler".
"""

from __future__ import annotations

# (ComfyUI sampler, ComfyUI scheduler) → A1111 legacy sampler name. The reference misspells the dpm_2 keys
# ("dpmpp_2"), so it writes "DPM2 Normal"; we use the names A1111 itself uses.
LEGACY_PAIRS: dict[tuple[str, str], str] = {
    ("euler_ancestral", "normal"): "Euler a",
    ("euler", "normal"): "Euler",
    ("lms", "normal"): "LMS",
    ("heun", "normal"): "Heun",
    ("dpm_2", "normal"): "DPM2",
    ("dpm_2_ancestral", "normal"): "DPM2 a",
    ("dpmpp_2s_ancestral", "normal"): "DPM++ 2S a",
    ("dpmpp_2m", "normal"): "DPM++ 2M",
    ("dpmpp_2m_sde", "normal"): "DPM++ 2M SDE",
    ("dpmpp_sde", "normal"): "DPM++ SDE",
    ("dpm_fast", "normal"): "DPM fast",
    ("dpm_adaptive", "normal"): "DPM adaptive",
    ("lms", "karras"): "LMS Karras",
    ("dpm_2", "karras"): "DPM2 Karras",
    ("dpm_2_ancestral", "karras"): "DPM2 a Karras",
    ("dpmpp_2s_ancestral", "karras"): "DPM++ 2S a Karras",
    ("dpmpp_2m", "karras"): "DPM++ 2M Karras",
    ("dpmpp_2m_sde", "karras"): "DPM++ 2M SDE Karras",
    ("dpmpp_sde", "karras"): "DPM++ SDE Karras",
    ("dpmpp_3m_sde", "normal"): "DPM++ 3M SDE",
    ("dpmpp_3m_sde", "karras"): "DPM++ 3M SDE Karras",
    ("dpmpp_3m_sde", "exponential"): "DPM++ 3M SDE Exponential",
    ("ddim", "normal"): "DDIM",
    ("plms", "normal"): "PLMS",
    ("uni_pc", "normal"): "UniPC",
    ("lcm", "normal"): "LCM",
}

# ComfyUI sampler → A1111 sampler. GPU and CFG++ variants read as their base sampler.
SAMPLERS: dict[str, str] = {
    "euler": "Euler", "euler_cfg_pp": "Euler",
    "euler_ancestral": "Euler a", "euler_ancestral_cfg_pp": "Euler a",
    "heun": "Heun", "heunpp2": "Heun",
    "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_2s_ancestral_cfg_pp": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_cfg_pp": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "lcm": "LCM", "ddim": "DDIM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC",
}
# Samplers A1111 does not have: written with a readable name unless `readable_unsupported` is off.
UNSUPPORTED_SAMPLERS: dict[str, str] = {
    "ddpm": "DDPM", "ipndm": "iPNDM", "ipndm_v": "iPNDM_v", "deis": "DEIS",
    "res_multistep": "RES Multistep", "res_multistep_cfg_pp": "RES Multistep",
    "res_multistep_ancestral": "RES Multistep a", "res_multistep_ancestral_cfg_pp": "RES Multistep a",
    "gradient_estimation": "Gradient Estimation", "er_sde": "ER SDE", "seeds_2": "Seeds 2", "seeds_3": "Seeds 3",
}
SCHEDULERS: dict[str, str] = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "Uniform", "beta": "Beta", "kl_optimal": "KL Optimal",
}
UNSUPPORTED_SCHEDULERS: dict[str, str] = {"linear_quadratic": "Linear Quadratic"}

FALLBACK_SAMPLER = "Euler"
FALLBACK_SCHEDULER = "Normal"


def a1111_sampler_name(sampler: str | None, scheduler: str | None = "normal", *,
                       readable_unsupported: bool = True) -> str | None:
    """The A1111 label of a ComfyUI sampler/scheduler pair; None without a sampler. An empty scheduler means normal;
    an unknown one is left out; an unknown sampler reads "Euler" (so "Euler <Scheduler>")."""
    sampler = str(sampler).strip() if sampler is not None else ""
    scheduler = (str(scheduler).strip() if scheduler is not None else "") or "normal"
    if not sampler:
        return None
    legacy = LEGACY_PAIRS.get((sampler, scheduler))
    if legacy:
        return legacy

    sampler_label = SAMPLERS.get(sampler)
    if sampler_label is None:
        sampler_label = UNSUPPORTED_SAMPLERS.get(sampler) if readable_unsupported else None
    scheduler_label = SCHEDULERS.get(scheduler)
    if scheduler_label is None and scheduler in UNSUPPORTED_SCHEDULERS:
        scheduler_label = UNSUPPORTED_SCHEDULERS[scheduler] if readable_unsupported else FALLBACK_SCHEDULER
    return f"{sampler_label or FALLBACK_SAMPLER} {scheduler_label or ''}".strip()

"""A1111-style sampler labels for infotext, from ComfyUI sampler and scheduler names
(docs/numerics.md "Infotext and sampler names"): "<sampler> <scheduler>" from the two maps below, where A1111's
legacy names leave the normal schedule out ("Euler a", "DPM++ 2M"). Unknown samplers read "Euler".
"""

from __future__ import annotations

# ComfyUI sampler → A1111 sampler. GPU and CFG++ variants read as their base sampler; samplers A1111 lacks keep a
# readable name (DEIS, iPNDM, ...).
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
    "ddpm": "DDPM", "ipndm": "iPNDM", "ipndm_v": "iPNDM_v", "deis": "DEIS",
    "res_multistep": "RES Multistep", "res_multistep_cfg_pp": "RES Multistep",
    "res_multistep_ancestral": "RES Multistep a", "res_multistep_ancestral_cfg_pp": "RES Multistep a",
    "gradient_estimation": "Gradient Estimation", "er_sde": "ER SDE", "seeds_2": "Seeds 2", "seeds_3": "Seeds 3",
}
SCHEDULERS: dict[str, str] = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "Uniform", "beta": "Beta", "kl_optimal": "KL Optimal",
    "linear_quadratic": "Linear Quadratic",
}
# The samplers whose A1111 legacy name with the normal schedule has no schedule word. The reference misspells the
# dpm_2 keys ("dpmpp_2"), so it writes "DPM2 Normal"; we use the names A1111 itself uses.
LEGACY_NORMAL = {"euler_ancestral", "euler", "lms", "heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                 "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "dpm_fast", "dpm_adaptive", "dpmpp_3m_sde", "ddim",
                 "uni_pc", "lcm"}


def a1111_sampler_name(sampler: str | None, scheduler: str | None = "normal") -> str | None:
    """The A1111 label of a ComfyUI sampler/scheduler pair; None without a sampler. An empty scheduler means normal;
    an unknown one is left out."""
    sampler = str(sampler).strip() if sampler is not None else ""
    scheduler = (str(scheduler).strip() if scheduler is not None else "") or "normal"
    if not sampler:
        return None
    if scheduler == "normal" and sampler in LEGACY_NORMAL:
        return SAMPLERS[sampler]
    return f"{SAMPLERS.get(sampler, 'Euler')} {SCHEDULERS.get(scheduler, '')}".strip()

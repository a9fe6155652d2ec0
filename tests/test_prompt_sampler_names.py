import pytest

from tinybreaker_ext.infotext import a1111_sampler_name

# ComfyUI v0.3.55's sampler and scheduler lists: 42 samplers x 9 schedulers
# (docs/numerics.md "Infotext and sampler names").
COMFY_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
]
COMFY_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal"]
A1111_SAMPLER_LABELS = {"Euler", "Euler a", "Heun", "DPM2", "DPM2 a", "LMS", "DPM fast", "DPM adaptive",
                        "DPM++ 2S a", "DPM++ SDE", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE", "LCM", "DDIM",
                        "UniPC", "PLMS", "DDPM", "iPNDM", "iPNDM_v", "DEIS", "RES Multistep", "RES Multistep a",
                        "Gradient Estimation", "ER SDE", "Seeds 2", "Seeds 3"}
SCHEDULER_LABELS = {"Normal", "Karras", "Exponential", "SGM Uniform", "Simple", "Uniform", "Beta", "KL Optimal",
                    "Linear Quadratic"}


@pytest.mark.parametrize("sampler, scheduler, expected", [
    # the reference's examples (docs/numerics.md "Infotext and sampler names")
    ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
    ("uni_pc", "normal", "UniPC"),
    ("euler_ancestral", "normal", "Euler a"),
    ("dpmpp_2m_sde", "karras", "DPM++ 2M SDE Karras"),
    ("ddim", "normal", "DDIM"),
    ("lms", "normal", "LMS"),
    ("uni_pc", "simple", "UniPC Simple"),
    ("dpmpp_2m_sde", "beta", "DPM++ 2M SDE Beta"),
    # sampler and scheduler maps
    ("deis", "ddim_uniform", "DEIS Uniform"),
    ("dpmpp_2m", "normal", "DPM++ 2M"),
    ("dpmpp_2m_sde_gpu", "exponential", "DPM++ 2M SDE Exponential"),
    ("euler_cfg_pp", "sgm_uniform", "Euler SGM Uniform"),
    ("uni_pc_bh2", "kl_optimal", "UniPC KL Optimal"),
    ("ipndm", "linear_quadratic", "iPNDM Linear Quadratic"),
    ("res_multistep_ancestral_cfg_pp", "beta", "RES Multistep a Beta"),
    ("dpmpp_3m_sde", "exponential", "DPM++ 3M SDE Exponential"),
    # docs/numerics.md "Infotext and sampler names": unknown samplers read "Euler <Scheduler>";
    # gradient_estimation_cfg_pp is not mapped
    ("sa_solver", "karras", "Euler Karras"),
    ("gradient_estimation_cfg_pp", "normal", "Euler Normal"),
    ("gradient_estimation", "normal", "Gradient Estimation Normal"),
    # the reference's misspelled keys are fixed: A1111's names for DPM2 with the normal scheduler
    ("dpm_2", "normal", "DPM2"),
    ("dpm_2_ancestral", "normal", "DPM2 a"),
    ("dpm_2", "karras", "DPM2 Karras"),
    # scheduler edge cases
    ("dpmpp_2m", "", "DPM++ 2M"),
    ("dpmpp_2m", "mystery", "DPM++ 2M"),
    (" euler ", " karras ", "Euler Karras"),
])
def test_a1111_names(sampler, scheduler, expected):
    assert a1111_sampler_name(sampler, scheduler) == expected


@pytest.mark.parametrize("sampler", COMFY_SAMPLERS)
def test_every_comfy_pair_gets_a_label(sampler):
    assert len(COMFY_SAMPLERS) == 42 and len(COMFY_SCHEDULERS) == 9
    for scheduler in COMFY_SCHEDULERS:
        label = a1111_sampler_name(sampler, scheduler)
        assert label and label == label.strip()
        known_prefix = any(label == name or label.startswith(name + " ") for name in A1111_SAMPLER_LABELS)
        assert known_prefix, (sampler, scheduler, label)
        suffix = label
        for name in sorted(A1111_SAMPLER_LABELS, key=len, reverse=True):
            if label.startswith(name):
                suffix = label[len(name):].strip()
                break
        assert suffix == "" or suffix in SCHEDULER_LABELS, (sampler, scheduler, label)

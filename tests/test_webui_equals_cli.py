"""The WebUI's `tinybreaker` refine is the command line's refine: with a host stand-in whose model and text encoder
are the tiny TinyBreaker file's embedded SD1 UNet and CLIP, one prompt, seed and style through the WebUI path
(process → process_batch → p.sample on the host's CFG denoiser) and through the command line give the same refined
latent. The embedded refiner needs diffusers (absent on A1111's stack), so this skips without it."""

import pytest

pytest.importorskip("diffusers")

from builders.params import script_args  # noqa: E402
from tinybreaker_ext.generation import plan_for, run_plan  # noqa: E402
from tinybreaker_ext.model_files import ModelFileSet  # noqa: E402
from tinybreaker_ext.params import TinyBreakerParams  # noqa: E402
from tinybreaker_ext.pipeline import TinyBreakerPipeline  # noqa: E402
from tinybreaker_ext.placement import MovePlacement  # noqa: E402
from tinybreaker_ext.plan import ImageRequest  # noqa: E402
from tinybreaker_ext.sampling.denoisers import EpsDenoiser  # noqa: E402
from tinybreaker_ext.sampling.schedules import sd1_sigmas  # noqa: E402
from tinybreaker_ext.standalone import EmbeddedRefiner  # noqa: E402

WIDTH, HEIGHT = 64, 48
CASES = [
    # (prompt, negative, fields, seed, batch): deis / ddim_uniform with a batch and weighted templates; lms / beta
    # with the refine window replaced by fields, --refine, --no, a detail level and an image shift
    ("a red cube on a table --cfg-shift 1", "blurry", {"style": "PHOTO"}, 5, 2),
    ("(a cat:1.3) on a roof --refine sharp fur --no fog --d high --i 3", "dark",
     {"style": "COMIC", "refine_steps": 3, "refine_strength": 0.3}, 7, 1),
]


@pytest.fixture(scope="module")
def files(tiny_model_folder):
    _folder, paths = tiny_model_folder
    return ModelFileSet(checkpoint=paths["checkpoint1"], t5=paths["t5"], t5_tokenizer=paths["t5_tokenizer"],
                        clip_tokenizer=paths["clip_tokenizer"], tokenizer_search={"allow_download": False})


def host_with_the_embedded_refiner(make_tb_host, files, monkeypatch):
    """An A1111 stand-in whose loaded SD1 model is the file's embedded refiner (UNet behind the host's CFG
    denoiser, CLIP as the host's text encoder) and whose TinyBreaker engine is the real pipeline."""
    from tinybreaker_ext.webui.run_plan import RunPlan

    env = make_tb_host("a1111")
    pipeline = TinyBreakerPipeline(files.checkpoint, files.t5, tokenizer_path=files.t5_tokenizer)
    refiner = EmbeddedRefiner(pipeline, clip_tokenizer_path=files.clip_tokenizer,
                              tokenizer_search=files.tokenizer_search)
    eps_model = EpsDenoiser(refiner.unet.eps, sd1_sigmas())
    env.sampling.unet = lambda x, sigma, context: eps_model(x, sigma, context)
    env.sampling.encode_text = lambda text: refiner.encode(text, MovePlacement("cpu"))[0]
    monkeypatch.setattr(RunPlan, "load_engine", lambda self, host: pipeline)
    return env


@pytest.mark.parametrize("prompt, negative, fields, seed, batch", CASES, ids=[c[2]["style"] for c in CASES])
def test_the_webuis_refine_gives_the_command_lines_latent(make_tb_host, files, monkeypatch, prompt, negative,
                                                          fields, seed, batch):
    cli = run_plan(files, plan_for(TinyBreakerParams(enabled=True, **fields),
                                   ImageRequest(prompt, negative, WIDTH, HEIGHT, seed, batch)))

    env = host_with_the_embedded_refiner(make_tb_host, files, monkeypatch)
    p = env.make_p(prompt=prompt, negative_prompt=negative, width=WIDTH, height=HEIGHT, seed=seed,
                   batch_size=batch)
    (webui,) = env.run(p, script_args(TinyBreakerParams(enabled=True, **fields)))

    assert cli.plan.refine_steps > 0 and len(env.sampling.calls) == cli.plan.refine_steps  # one host call a step
    assert webui.shape == cli.refined.shape == (batch, 4, HEIGHT // 8, WIDTH // 8)
    relative = (webui.cpu() - cli.refined).norm() / cli.refined.norm()
    assert relative <= 1e-4, float(relative)


def test_the_webui_mode_differs_and_the_comparison_would_see_it(make_tb_host, files, monkeypatch):
    """A control: the host's own sampler (here the stand-in's one-step img2img) does not give the reference's
    latent, so the test above is not comparing a latent with itself."""
    prompt, negative, fields, seed, batch = CASES[1]
    cli = run_plan(files, plan_for(TinyBreakerParams(enabled=True, **fields),
                                   ImageRequest(prompt, negative, WIDTH, HEIGHT, seed, batch)))
    env = host_with_the_embedded_refiner(make_tb_host, files, monkeypatch)
    p = env.make_p(prompt=prompt, negative_prompt=negative, width=WIDTH, height=HEIGHT, seed=seed,
                   batch_size=batch)
    (webui,) = env.run(p, script_args(TinyBreakerParams(enabled=True, refine_sampler="webui", **fields)))
    assert (webui.cpu() - cli.refined).norm() / cli.refined.norm() > 1e-2

"""Our HTTP routes on a real FastAPI app: /tinybreaker/v1/options, /styles, /models, and --api-auth."""

import base64
import os

import pytest

from builders.fake_hosts import CALLS
from builders.fixtures_webui import CHECKPOINT_NAME, T5_NAME
from tinybreaker_ext import params
from tinybreaker_ext.prompt.styles import StyleLibrary
from tinybreaker_ext.webui import api

fastapi = pytest.importorskip("fastapi", reason="the hosts' API framework; pip install fastapi")
httpx = pytest.importorskip("httpx", reason="fastapi.testclient needs httpx")
from fastapi.testclient import TestClient  # noqa: E402


def client_for(env) -> TestClient:
    app = fastapi.FastAPI()
    api.register_routes(app)
    try:
        return TestClient(app)
    except TypeError as error:  # starlette 0.26 (FastAPI 0.94, A1111's pin) passes app= to httpx.Client: httpx<0.28
        pytest.skip(f"this starlette's TestClient does not work with httpx {httpx.__version__}: {error}")


def test_options_schema_lists_every_field_in_argument_order(tb_host):
    response = client_for(tb_host).get("/tinybreaker/v1/options")
    assert response.status_code == 200
    body = response.json()
    assert body["script"] == "TinyBreaker"
    fields = body["fields"]
    assert [field["name"] for field in fields] == list(params.FIELD_NAMES)
    assert [field["index"] for field in fields] == list(range(len(params.FIELDS)))
    by_name = {field["name"]: field for field in fields}
    assert by_name["base_steps"]["type"] == "int" and (by_name["base_steps"]["minimum"],
                                                        by_name["base_steps"]["maximum"]) == (0, 100)
    assert by_name["refine_strength"]["default"] == 0.0 and by_name["enabled"]["default"] is False
    assert by_name["checkpoint"]["choices"] == ["", CHECKPOINT_NAME]  # "" = the first one found
    assert by_name["t5_file"]["choices"] == ["", T5_NAME]
    assert "PHOTO" in by_name["style"]["choices"]
    assert by_name["t5_mode"]["choices"] == ["auto", "gpu", "cpu", "stream"]
    assert by_name["upscale_mode"]["choices"] == ["upscaler", "enhancer"]
    assert by_name["upscale_model"]["choices"] == ["none", "Lanczos", "R-ESRGAN 4x+"]  # the host's upscalers
    assert body["version"] == params.SCHEMA_VERSION


def test_styles_route_lists_the_builtin_styles(tb_host):
    response = client_for(tb_host).get("/tinybreaker/v1/styles")
    assert response.status_code == 200
    assert response.json() == {"styles": StyleLibrary.load_builtin().names()}


def test_models_route_lists_what_the_models_folder_holds(tb_host):
    body = client_for(tb_host).get("/tinybreaker/v1/models").json()
    assert body["folders"] == [os.path.join(tb_host.models_path, "TinyBreaker")]
    (checkpoint,) = body["checkpoint"]
    assert checkpoint["name"] == CHECKPOINT_NAME and checkpoint["kind"] == "tinybreaker_prototype1"
    assert checkpoint["path"] == tb_host.files["checkpoint"]
    assert [entry["name"] for entry in body["t5"]] == [T5_NAME]


def test_models_route_with_an_empty_folder(tb_host, tmp_path):
    tb_host.shared.cmd_opts.tinybreaker_dir = str(tmp_path)
    body = client_for(tb_host).get("/tinybreaker/v1/models").json()
    assert body["memory"]["pairs"] == [] and body["memory"]["device"] == "cpu"
    del body["memory"]
    assert body == {"folders": [str(tmp_path)], "checkpoint": [], "t5": []}


def test_models_route_gives_the_preflights_estimate_for_each_checkpoint_and_t5(tb_host):
    """Per checkpoint/T5 pair and T5 placement: the peak RAM and device bytes, whether it fits the host's free
    memory now, and the command line's line — the same plan_memory the job's preflight runs."""
    import torch

    from tinybreaker_ext.memory_plan import plan_memory
    from tinybreaker_ext.models.t5_policy import available_ram_bytes

    memory = client_for(tb_host).get("/tinybreaker/v1/models").json()["memory"]
    assert memory["device"] == "cpu" and memory["free_device_bytes"] is None
    assert abs(memory["free_ram_bytes"] - available_ram_bytes()) < 2 * 1024**3  # the host's reading, just taken
    (pair,) = memory["pairs"]
    assert (pair["checkpoint"], pair["t5"]) == (CHECKPOINT_NAME, T5_NAME)
    assert list(pair["placements"]) == ["auto", "gpu", "cpu", "stream"]
    for mode, estimate in pair["placements"].items():
        expected = plan_memory(tb_host.files["t5"], tb_host.files["checkpoint"], device="cpu",
                               model_dtype=torch.float32, t5_mode=mode, free_ram=memory["free_ram_bytes"])
        assert estimate["ram_bytes"] == expected.ram_peak > 0 and estimate["device_bytes"] == 0
        assert estimate["fits"] is True and estimate["t5_mode"] == expected.t5_mode
        assert estimate["message"].startswith(f"T5 {expected.t5_mode} (")
    assert pair["placements"]["auto"]["t5_mode"] == "cpu"


def test_models_route_reports_a_pair_it_cannot_estimate_and_keeps_serving(tb_host, monkeypatch):
    """A file replaced or cut short after the folder scan: its pair says why, the route still answers."""
    from tinybreaker_ext.errors import ModelFileError
    from tinybreaker_ext.webui import run_plan

    def truncated(host, checkpoint_path, t5_path):
        raise ModelFileError(t5_path, "truncated: 100 bytes on disk", "a complete safetensors file")

    monkeypatch.setattr(run_plan, "estimates", truncated)
    response = client_for(tb_host).get("/tinybreaker/v1/models")
    assert response.status_code == 200
    (pair,) = response.json()["memory"]["pairs"]
    assert "placements" not in pair and "truncated: 100 bytes on disk" in pair["error"]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("route, method", [("options", "get"), ("styles", "get"), ("models", "get"),
                                           ("plan", "post")])
def test_api_auth_guards_every_route(make_tb_host, route, method):
    env = make_tb_host("a1111")
    env.shared.cmd_opts.api_auth = "admin:secret,u:p"
    client = client_for(env)
    url = f"/tinybreaker/v1/{route}"
    send = getattr(client, method)
    extra = {"json": {"args": [True]}} if method == "post" else {}
    assert send(url, **extra).status_code == 401
    assert send(url, headers=basic("u", "wrong"), **extra).status_code == 401
    assert send(url, headers=basic("nobody", "p"), **extra).status_code == 401
    assert send(url, headers=basic("u", "p"), **extra).status_code == 200
    assert send(url, headers=basic("admin", "secret"), **extra).status_code == 200


def test_without_api_auth_routes_are_open(make_tb_host):
    env = make_tb_host("forge")
    assert client_for(env).get("/tinybreaker/v1/styles").status_code == 200


def test_routes_with_api_auth_register_on_every_fastapi(make_tb_host):
    env = make_tb_host("reforge")
    env.shared.cmd_opts.api_auth = "u:p"
    app = fastapi.FastAPI()
    api.register_routes(app)  # FastAPI 0.94 resolves the dependency's annotations here
    guarded = [route for route in app.routes if route.path.startswith(api.ROUTE_PREFIX)]
    assert len(guarded) == 5 and all(route.dependencies for route in guarded)


def test_plan_route_answers_what_a_request_would_run_without_running_it(tb_host):
    body = {"prompt": "a lighthouse --aspect 16:9 --seed 7 --style COMIC --d high", "negative_prompt": "fog",
            "width": 512, "height": 512, "seed": 3, "batch_size": 2, "args": [{"enabled": True, "cfg_shift": 1}]}
    response = client_for(tb_host).post("/tinybreaker/v1/plan", json=body)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert (plan["width"], plan["height"], plan["seeds"], plan["style"]) == (1664, 944, [7, 8], "COMIC")
    assert plan["params"]["detail_level"] == 1 and plan["params"]["cfg_shift"] == 1
    assert plan["base"]["sampler"] == "deis" and plan["base"]["sigmas"][-1] == 0.0
    assert plan["refine_steps"] == len(plan["refine"]["sigmas"]) - 1 and plan["refine_mode"] == "tinybreaker"
    assert plan["texts"]["base_negative"].endswith("fog") and "engine.base" not in [c[0] for c in CALLS]


def test_plan_route_gives_the_enhancers_sizes_with_a_hosts_upscaler(tb_host):
    body = {"width": 512, "height": 384, "args": [{"enabled": True, "upscale": True, "upscale_by": 2.5,
                                                    "upscale_mode": "enhancer", "upscale_model": "R-ESRGAN 4x+"}]}
    response = client_for(tb_host).post("/tinybreaker/v1/plan", json=body)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["output_size"] == [512, 384] and plan["upscaled_size"] == [1280, 960]
    assert plan["params"]["upscale_model"] == "R-ESRGAN 4x+" and "upscaler.upscale" not in [c[0] for c in CALLS]


@pytest.mark.parametrize("body, field", [
    ({"args": [{"enabled": True, "base_steps": 1000}]}, "base_steps"),
    ({"args": {"no_such_field": 1}}, "no_such_field"),
    ({"width": "wide"}, "width"),
    ({"width": 70, "height": 64}, "width"),
    ({"seed": 2 ** 70}, "seed"),
    ({"prompt": "a cat --upscale --upscale-model 4x-Nope", "args": [True]}, "upscale_model"),
])
def test_plan_route_names_the_field_of_a_bad_request(tb_host, body, field):
    response = client_for(tb_host).post("/tinybreaker/v1/plan", json=body)
    assert response.status_code == 422 and field in response.text


def test_a_saved_style_is_listed_at_once_and_reproduces_the_settings(tb_host, tmp_path):
    from tinybreaker_ext.plan import ImageRequest, make_plan
    from tinybreaker_ext.webui.locations import style_library

    tb_host.shared.cmd_opts.tinybreaker_dir = str(tmp_path)
    settings = {"enabled": True, "style": "COMIC", "base_steps": 20, "base_cfg": 6.0, "detail_level": 1,
                "image_shift": 2, "refine_cfg": 4.5}
    client = client_for(tb_host)
    response = client.post("/tinybreaker/v1/styles", json={"name": "MY_COMIC", "args": [settings]})
    assert response.status_code == 200, response.text
    assert "MY_COMIC" in response.json()["styles"]
    assert "MY_COMIC" in client.get("/tinybreaker/v1/styles").json()["styles"]
    assert (tmp_path / "styles" / "my_styles.ini").is_file()
    request = ImageRequest("a castle", width=1024, height=1024, seed=5)
    saved = make_plan(TinyBreakerParams_(style="MY_COMIC"), request, style_library())
    original = make_plan(TinyBreakerParams_(**settings), request, style_library())
    assert saved.base == original.base and saved.texts() == original.texts()
    assert saved.refine_sigmas.tolist() == original.refine_sigmas.tolist()
    assert saved.refine.cfg == 4.5 and saved.refine.noise_seed == original.refine.noise_seed
    again = client.post("/tinybreaker/v1/styles", json={"name": "MY_COMIC", "args": [{**settings, "base_cfg": 7.0}]})
    assert again.status_code == 200  # saving again replaces the style
    assert make_plan(TinyBreakerParams_(style="MY_COMIC"), request, style_library()).base.cfg == 7.0


@pytest.mark.parametrize("body, fragment", [({"name": "PHOTO"}, "built-in"), ({"name": "bad name!"}, "letters"),
                                            ({"args": [True]}, "name")])
def test_saving_a_style_refuses_bad_names(tb_host, tmp_path, body, fragment):
    tb_host.shared.cmd_opts.tinybreaker_dir = str(tmp_path)
    response = client_for(tb_host).post("/tinybreaker/v1/styles", json=body)
    assert response.status_code == 422 and fragment in response.text


def TinyBreakerParams_(**values):
    return params.TinyBreakerParams(**{"enabled": True, **values})


def test_plan_route_warns_that_a_20000_character_prompt_is_cut_and_answers_in_seconds(tb_host, tmp_path,
                                                                                      t5_tokenizer_dir):
    import shutil
    import time

    shutil.copytree(t5_tokenizer_dir, tmp_path / "t5_tokenizer")
    tb_host.shared.cmd_opts.tinybreaker_dir = str(tmp_path)  # where the WebUI looks for the T5 tokenizer first
    prompt = ("a lighthouse on a cliff at dusk, waves, gulls, " * 500)[:20_000]
    started = time.monotonic()
    response = client_for(tb_host).post("/tinybreaker/v1/plan", json={"prompt": prompt, "args": [True]})
    assert time.monotonic() - started < 10
    assert response.status_code == 200, response.text
    warning, = [w for w in response.json()["warnings"] if "T5 tokens" in w]
    assert "only the first 512 are used" in warning


def test_plan_route_refuses_an_8192_square_image_in_seconds_with_the_limit(tb_host):
    import time

    started = time.monotonic()
    response = client_for(tb_host).post("/tinybreaker/v1/plan", json={"width": 8192, "height": 8192, "args": [True]})
    assert time.monotonic() - started < 10
    assert response.status_code == 422
    assert "8192x8192 is 67.1 megapixels" in response.text and "2048x2048" in response.text

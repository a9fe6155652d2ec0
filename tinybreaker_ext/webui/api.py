"""HTTP routes: GET /tinybreaker/v1/models (with the memory estimates), /options and /styles, behind the host's
--api-auth when it is on."""

from __future__ import annotations

import os
from secrets import compare_digest

from .. import params
from . import locations
from .styles_source import style_names

ROUTE_PREFIX = "/tinybreaker/v1"


def list_models() -> dict:
    from ..files.finder import ModelFinder

    dirs = locations.model_dirs()
    finder = ModelFinder(dirs)
    result = {"folders": dirs}
    for role in ("checkpoint", "t5"):
        result[role] = [{"name": os.path.basename(info.path), "path": info.path, "kind": info.kind.name.lower(),
                         "description": info.description} for info in finder.candidates(role)]
    return result


def models_route() -> dict:
    """GET /models: the files found by role (``list_models``) and ``memory``, the preflight's estimate for each
    checkpoint/T5 pair on this host (``memory_estimates``)."""
    models = list_models()
    models["memory"] = memory_estimates(models)
    return models


def memory_estimates(models: dict) -> dict:
    """``device`` (where TinyBreaker computes), ``free_ram_bytes`` and ``free_device_bytes`` (what the host reports
    free for TinyBreaker now; null where unknown or on a CPU), and ``pairs``: one entry per checkpoint/T5 pair
    with ``checkpoint`` and ``t5`` (file names) and ``placements`` — for ``auto``, ``gpu``, ``cpu`` and ``stream``:
    ``t5_mode`` (what runs), ``ram_bytes`` and ``device_bytes`` at the peak stage, ``fits`` and the one-line
    ``message`` — or ``error`` when a header cannot be read. From file headers only."""
    from ..errors import TinyBreakerError
    from . import preflight
    from .host import get_host

    host = get_host()
    device = host.compute_device()
    free_ram, free_device = preflight.free_for_tinybreaker(host, device)
    pairs = []
    for checkpoint in models["checkpoint"]:
        for t5 in models["t5"]:
            entry = {"checkpoint": checkpoint["name"], "t5": t5["name"]}
            try:
                entry["placements"] = preflight.estimates(host, checkpoint["path"], t5["path"])
            except TinyBreakerError as error:
                entry["error"] = str(error)
            pairs.append(entry)
    return {"device": str(device), "free_ram_bytes": free_ram, "free_device_bytes": free_device, "pairs": pairs}


def dynamic_choices() -> dict[str, list[str]]:
    models = list_models()
    return {"checkpoint": [""] + [entry["name"] for entry in models["checkpoint"]],
            "t5_file": [""] + [entry["name"] for entry in models["t5"]],
            "style": style_names(), "upscale_model": upscale_model_choices()}


def upscale_model_choices() -> list[str]:
    """'none', then the WebUI's own upscalers (what Hires fix offers)."""
    from ..params import NO_UPSCALE_MODEL
    from .host_upscalers import upscaler_names

    return [NO_UPSCALE_MODEL, *upscaler_names()]


def register_routes(app) -> None:
    from fastapi import Depends

    dependencies = [Depends(_auth_dependency())] if _credentials() else []
    app.add_api_route(f"{ROUTE_PREFIX}/models", models_route, methods=["GET"], dependencies=dependencies)
    app.add_api_route(f"{ROUTE_PREFIX}/options", lambda: params.options_schema(dynamic_choices()), methods=["GET"],
                      dependencies=dependencies)
    app.add_api_route(f"{ROUTE_PREFIX}/styles", lambda: {"styles": style_names()}, methods=["GET"],
                      dependencies=dependencies)
    app.add_api_route(f"{ROUTE_PREFIX}/plan", plan_route, methods=["POST"], dependencies=dependencies)
    app.add_api_route(f"{ROUTE_PREFIX}/styles", save_style_route, methods=["POST"], dependencies=dependencies)


def save_style_route(request: dict):
    """Saves a style: ``{"name": "MY_STYLE", "args": …}`` with ``args`` as in the script's arguments."""
    from ..errors import ParameterError, TinyBreakerError
    from .errors import request_error
    from .styles_source import save_style

    try:
        if not isinstance(request, dict) or not isinstance(request.get("name"), str):
            raise ParameterError("name", "expected a JSON object with a style 'name'")
        args = request.get("args", [])
        save_style(request["name"], params.from_script_args(args if isinstance(args, list) else [args]))
    except TinyBreakerError as error:
        raise request_error(error) from None
    return {"styles": style_names()}


def plan_route(request: dict):
    """What a txt2img request would run, without running it: the body takes txt2img's own fields (prompt,
    negative_prompt, width, height, seed, batch_size) and ``args`` as in ``alwayson_scripts.TinyBreaker.args``."""
    from ..errors import TinyBreakerError
    from .errors import request_error

    try:
        return plan_summary(request)
    except TinyBreakerError as error:
        raise request_error(error) from None


def plan_summary(request: dict) -> dict:
    from ..errors import ParameterError
    from ..limits import t5_token_counter
    from ..plan import ImageRequest, make_plan
    from .run_plan import _tokenizer_search
    from .styles_source import style_library

    if not isinstance(request, dict):
        raise ParameterError("body", f"expected a JSON object, got {type(request).__name__}")
    args = request.get("args", [])
    fields = params.from_script_args(args if isinstance(args, list) else [args])
    values = {}
    for name, kind, default in (("prompt", str, ""), ("negative_prompt", str, ""), ("width", int, 512),
                                ("height", int, 512), ("seed", int, -1), ("batch_size", int, 1)):
        value = request.get(name, default)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ParameterError(name, f"expected {kind.__name__}, got {value!r}")
        values[name] = value
    image = ImageRequest(values["prompt"], values["negative_prompt"], values["width"], values["height"],
                         values["seed"], values["batch_size"], locations.size_step())
    from ..errors import ModelNotFoundError
    from ..prompt.file_defaults import checkpoint_file_defaults
    from .host_upscalers import check_plan_upscaler
    from .run_plan import resolve_file

    try:  # the checkpoint's metadata defaults, as a generation would use them
        defaults = checkpoint_file_defaults(resolve_file("checkpoint", fields.checkpoint, "checkpoint"))
    except ModelNotFoundError:  # no checkpoint installed yet: the plan of the styles alone
        defaults = None
    plan = make_plan(fields, image, style_library(), t5_tokens=t5_token_counter(_tokenizer_search()),
                     file_defaults=defaults)
    check_plan_upscaler(plan)
    return plan.summary()


def _credentials() -> dict[str, str]:
    from modules import shared

    auth = getattr(shared.cmd_opts, "api_auth", None)
    if not auth:
        return {}
    pairs = (item.split(":", 1) for item in auth.split(",") if ":" in item)
    return {user: password for user, password in pairs}


def _auth_dependency():
    """The same HTTP basic check the host's own /sdapi routes use (``Api.auth``)."""
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBasic

    # No annotation on purpose: with postponed annotations, FastAPI 0.94 (A1111, reForge) evaluates the string
    # "HTTPBasicCredentials" in this module's globals and fails; Depends alone tells it what to inject.
    def check(credentials=Depends(HTTPBasic())):
        expected = _credentials().get(credentials.username)
        if expected is not None and compare_digest(credentials.password, expected):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    return check

"""The /tinybreaker/v1 routes (README "API") behind the host's --api-auth when it is on, the 4xx answer to our errors,
and the choices the accordion lists."""

from __future__ import annotations

import logging
import os
from secrets import compare_digest

from .. import params
from ..errors import ParameterError, TinyBreakerError
from . import locations

ROUTE_PREFIX = "/tinybreaker/v1"
log = logging.getLogger(__name__)


def request_error(error: TinyBreakerError) -> Exception:
    """A TinyBreakerError is about what the request asked for → HTTP 422 with its one-line message (the UI shows it
    too); callers let anything else, a fault of the server, reach the host's own handler (500) unchanged."""
    from fastapi import HTTPException

    # Positional: starlette before 0.28 (A1111's) has no HTTPException.__str__, and Exception's shows only the
    # positional arguments; queue tools (agent-scheduler) record str() of the error as a failed task's result.
    return HTTPException(422, str(error))


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
    """The files found by role and the preflight's estimates per checkpoint/T5 pair (README "API")."""
    from . import run_plan
    from .host import get_host

    models = list_models()
    host = get_host()
    device = host.compute_device()
    free_ram, free_device = run_plan.free_for_tinybreaker(host, device)
    pairs = []
    for checkpoint in models["checkpoint"]:
        for t5 in models["t5"]:
            entry = {"checkpoint": checkpoint["name"], "t5": t5["name"]}
            try:
                entry["placements"] = run_plan.estimates(host, checkpoint["path"], t5["path"])
            except TinyBreakerError as error:
                entry["error"] = str(error)
            pairs.append(entry)
    models["memory"] = {"device": str(device), "free_ram_bytes": free_ram, "free_device_bytes": free_device,
                        "pairs": pairs}
    return models


def dynamic_choices() -> dict[str, list[str]]:
    models = list_models()
    return {"checkpoint": [""] + [entry["name"] for entry in models["checkpoint"]],
            "t5_file": [""] + [entry["name"] for entry in models["t5"]],
            "style": locations.style_names(), "upscale_model": upscale_model_choices()}


def upscale_model_choices() -> list[str]:
    """'none', then the WebUI's own upscalers (what Hires fix offers)."""
    from .upscale import host_upscalers

    return [params.NO_UPSCALE_MODEL, *(str(upscaler.name) for upscaler in host_upscalers())]


def control_choices(field_name: str) -> list[str]:
    """An accordion dropdown's choices, read from disk when the UI is built or refreshed."""
    try:
        if field_name == "style":
            return locations.style_names()
        if field_name == "upscale_model":
            return upscale_model_choices()
        return [name for name in dynamic_choices().get(field_name, []) if name]
    except Exception as error:  # an unreadable folder must not break the whole txt2img tab
        log.warning("TinyBreaker: could not list %s choices: %s", field_name, error)
        return []


def register_routes(app) -> None:
    from fastapi import Depends

    dependencies = [Depends(_auth_dependency())] if _credentials() else []
    for path, route, method in (("models", models_route, "GET"),
                                ("options", lambda: params.options_schema(dynamic_choices()), "GET"),
                                ("styles", lambda: {"styles": locations.style_names()}, "GET"),
                                ("plan", plan_route, "POST"), ("styles", save_style_route, "POST")):
        app.add_api_route(f"{ROUTE_PREFIX}/{path}", route, methods=[method], dependencies=dependencies)


def save_style_route(request: dict):
    """``{"name": "MY_STYLE", "args": …}`` with ``args`` as in the script's arguments."""

    try:
        if not isinstance(request, dict) or not isinstance(request.get("name"), str):
            raise ParameterError("name", "expected a JSON object with a style 'name'")
        args = request.get("args", [])
        locations.save_style(request["name"], params.from_script_args(args if isinstance(args, list) else [args]))
    except TinyBreakerError as error:
        raise request_error(error) from None
    return {"styles": locations.style_names()}


def plan_route(request: dict):
    """What a txt2img request would run, without running it: the body takes txt2img's own fields (prompt,
    negative_prompt, width, height, seed, batch_size) and ``args`` as in ``alwayson_scripts.TinyBreaker.args``."""
    from ..plan import ImageRequest
    from .run_plan import build_run_plan

    try:
        if not isinstance(request, dict):
            raise ParameterError("body", f"expected a JSON object, got {type(request).__name__}")
        args = request.get("args", [])
        fields = params.from_script_args(args if isinstance(args, list) else [args])
        values = []  # ImageRequest's fields in its order
        for name, kind, default in (("prompt", str, ""), ("negative_prompt", str, ""), ("width", int, 512),
                                    ("height", int, 512), ("seed", int, -1), ("batch_size", int, 1)):
            value = request.get(name, default)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ParameterError(name, f"expected {kind.__name__}, got {value!r}")
            values.append(value)
        image = ImageRequest(*values, size_step=locations.size_step())
        plan = build_run_plan(fields, image, locations.style_library(), files_required=False)
        if plan.error is not None:
            raise plan.error
        return plan.generation.summary()
    except TinyBreakerError as error:
        raise request_error(error) from None


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

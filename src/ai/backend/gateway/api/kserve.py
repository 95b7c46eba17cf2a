"""KServe v2 REST (DESIGN.md §5; protocols.md §2.1–§2.6, §2.8): health, server and model
metadata, model readiness and inference with the binary tensor extension in both directions.

Every path that names a model takes an optional ``/versions/{version}`` (without it: the latest
version). Health answers carry JSON bodies (kserve's client reads them); errors are
``{"error": …}`` with ``Content-Type: application/json`` exactly (the error middleware renders
the gateway's errors): 400 for a malformed request, 404 for an unknown model, 504 when the model
does not answer in time. ``POST …/infer`` requires no Content-Type (tritonclient sends none).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ai.backend.common.web import json_response

from ..errors import InferenceFailed
from ..services.inference import EXTENSIONS, SERVER_NAME
from ..services.kserve_codec import (
    HEADER_LENGTH,
    BadModelResponse,
    parse_rest_request,
    render_rest_response,
)
from ..services.model_registry import ModelVersion
from .context import context

PLATFORM = "backend.ai_actor"
MODEL_PATHS = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")


def _model_ref(request: web.Request) -> tuple[str, str | None]:
    return request.match_info["name"], request.match_info.get("version")


async def server_live(request: web.Request) -> web.Response:
    return json_response({"live": True})


async def server_ready(request: web.Request) -> web.Response:
    ready = context(request).inference.ready
    return json_response({"ready": ready}, status=200 if ready else 503)


async def server_metadata(request: web.Request) -> web.Response:
    ctx = context(request)
    return json_response(
        {"name": SERVER_NAME, "version": ctx.version, "extensions": list(EXTENSIONS)}
    )


async def list_models(request: web.Request) -> web.Response:
    """kserve's extra: the names of the models served."""
    names = sorted({m.name for m in context(request).inference.models()})
    return json_response({"models": names})


def model_metadata_body(model: ModelVersion, versions: list[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": model.inputs,
        "outputs": model.outputs,
    }


async def model_metadata(request: web.Request) -> web.Response:
    inference = context(request).inference
    name, version = _model_ref(request)
    model = await inference.model(name, version)
    versions = [m.version for m in inference.registry.versions(name)] or [model.version]
    return json_response(model_metadata_body(model, versions))


async def model_ready(request: web.Request) -> web.Response:
    name, version = _model_ref(request)
    model = await context(request).inference.model(name, version)
    return json_response({"name": model.name, "ready": True})


async def infer(request: web.Request) -> web.Response:
    inference = context(request).inference
    name, version = _model_ref(request)
    await inference.model(name, version)  # an unknown model is a 404 whatever the body
    call = parse_rest_request(await request.read(), request.headers.get(HEADER_LENGTH))
    outcome = await inference.infer(name, version, call.payload)
    try:
        head, blobs = render_rest_response(
            outcome.result,
            model_name=outcome.model.name,
            model_version=outcome.model.version,
            response_id=call.request_id if call.request_id is not None else outcome.request_id,
            choice=call.outputs,
        )
    except BadModelResponse as e:
        raise InferenceFailed(f"model {name}: {e}") from None
    if blobs is None:
        return web.Response(body=head, content_type="application/json")
    return web.Response(
        body=head + blobs,
        headers={HEADER_LENGTH: str(len(head))},
        content_type="application/octet-stream",
    )


def add_kserve_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/v2/health/live", server_live)
    router.add_get("/v2/health/ready", server_ready)
    router.add_get("/v2", server_metadata)
    router.add_get("/v2/models", list_models)
    for path in MODEL_PATHS:
        router.add_get(path, model_metadata)
        router.add_get(path + "/ready", model_ready)
        router.add_post(path + "/infer", infer)

"""``GET /openapi.json``: an OpenAPI 3.1 document of every route the gateway serves, with the
request and response schemas of the shared DTOs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ai.backend.common import __version__
from ai.backend.common.dto.gateway_api import (
    JobCreateRequest,
    JobHandle,
    JobInfo,
    StoredJobEvent,
    ToolCallRequest,
    ToolInfo,
)
from ai.backend.common.web import json_response

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
    "required": ["error"],
}
MODELS: list[type[BaseModel]] = [
    JobCreateRequest,
    JobHandle,
    JobInfo,
    StoredJobEvent,
    ToolCallRequest,
    ToolInfo,
]


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list_of(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(model)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, "error") for s in statuses}


WAIT = {
    "name": "wait",
    "in": "query",
    "schema": {"type": "number", "minimum": 0, "maximum": 300},
    "description": "wait up to this many seconds for the job to end (200 with the job)",
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
STARTED = {
    "200": _json(_ref(JobInfo), "the job ended within ?wait"),
    "202": _json(_ref(JobHandle), "the job was created; follow it at stream_url"),
}


def _model_paths(
    base: str, parameters: list[dict[str, Any]], opaque: dict[str, Any]
) -> dict[str, Any]:
    return {
        base: {
            "get": {
                "summary": "KServe v2 model metadata",
                "parameters": parameters,
                "responses": {"200": _json(opaque, "metadata"), **_errors(404)},
            }
        },
        f"{base}/ready": {
            "get": {
                "summary": "KServe v2 model ready",
                "parameters": parameters,
                "responses": {"200": _json(opaque, '{"name": m, "ready": true}'), **_errors(404)},
            }
        },
        f"{base}/infer": {
            "post": {
                "summary": "KServe v2 inference (JSON or the binary tensor extension)",
                "parameters": parameters,
                "responses": {"200": _json(opaque, "inference response"), **_errors(400, 404, 504)},
            }
        },
    }


def _paths() -> dict[str, Any]:
    kserve_model = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    kserve_version = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    opaque = {"type": "object"}
    return {
        "/health": {
            "get": {
                "summary": "health",
                "responses": {"200": _json(opaque, "ok"), "503": _json(opaque, "degraded")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text format"}},
            }
        },
        "/v1/tools": {
            "get": {
                "summary": "list tools",
                "responses": {"200": _json(_list_of(ToolInfo), "tools"), **_errors(401)},
            }
        },
        "/v1/tools/{name}/call": {
            "post": {
                "summary": "call a tool (starts a job)",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    WAIT,
                ],
                "requestBody": {"content": {"application/json": {"schema": _ref(ToolCallRequest)}}},
                "responses": {**STARTED, **_errors(400, 401, 404)},
            }
        },
        "/v1/jobs": {
            "post": {
                "summary": "create a job by tool or by route",
                "parameters": [WAIT],
                "requestBody": {
                    "content": {"application/json": {"schema": _ref(JobCreateRequest)}}
                },
                "responses": {**STARTED, **_errors(400, 401, 404)},
            },
            "get": {
                "summary": "list jobs, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["pending", "running", "succeeded", "failed", "cancelled"],
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _json(_list_of(JobInfo), "jobs"), **_errors(400, 401)},
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "a job",
                "parameters": [JOB_ID],
                "responses": {"200": _json(_ref(JobInfo), "the job"), **_errors(401, 404)},
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "summary": "cancel a job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(_ref(JobInfo), "the cancelled job"),
                    **_errors(401, 404, 409),
                },
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "summary": "the job's events as SSE (id: seq; resumable with Last-Event-ID)",
                "parameters": [
                    JOB_ID,
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                ],
                "responses": {
                    "200": {
                        "description": "text/event-stream of StoredJobEvent.data",
                        "content": {"text/event-stream": {"schema": _ref(StoredJobEvent)}},
                    },
                    **_errors(400, 401, 404),
                },
            }
        },
        "/mcp": {
            "post": {
                "summary": "MCP Streamable HTTP (2026-07-28 and handshake revisions)",
                "responses": {
                    "200": {"description": "JSON-RPC response or SSE"},
                    "202": {"description": "notification accepted"},
                },
            },
            "get": {
                "summary": "MCP standalone stream (not offered)",
                "responses": {"405": {"description": "not offered"}},
            },
            "delete": {
                "summary": "end an MCP session (handshake revisions)",
                "responses": {"200": {"description": "ended"}},
            },
        },
        "/v2/health/live": {
            "get": {
                "summary": "KServe v2 server live",
                "responses": {"200": _json(opaque, '{"live": true}')},
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "KServe v2 server ready",
                "responses": {"200": _json(opaque, '{"ready": true}')},
            }
        },
        "/v2": {
            "get": {
                "summary": "KServe v2 server metadata",
                "responses": {"200": _json(opaque, "metadata")},
            }
        },
        "/v2/models": {
            "get": {
                "summary": "models of the registry",
                "responses": {"200": _json(opaque, "models")},
            }
        },
        **_model_paths("/v2/models/{name}", [kserve_model], opaque),
        **_model_paths(
            "/v2/models/{name}/versions/{version}", [kserve_model, kserve_version], opaque
        ),
    }


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "Backend.AI Actors gateway", "version": __version__},
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "hmac": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
        "security": [{"bearer": []}, {"hmac": []}],
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)

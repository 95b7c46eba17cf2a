"""``GET /openapi.json``: an OpenAPI 3.1 document of every route the manager serves, with the
request and response schemas of the shared DTOs (``tests/manager/test_openapi.py`` compares
its paths and methods with the app's router, so a new route cannot go undocumented)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ai.backend.common import __version__
from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.agent import AgentHeartbeat, HeartbeatReply
from ai.backend.common.dto.gateway_api import ApiTokenCreated, ApiTokenCreateRequest, ApiTokenInfo
from ai.backend.common.dto.manager_api import (
    ActorInfo,
    ActorSummary,
    AgentInfo,
    ApplyResult,
    KeypairCreated,
    KeypairCreateRequest,
    KeypairInfo,
    ModelInfo,
    ScaleRequest,
)
from ai.backend.common.web import json_response

ERROR_SCHEMA = {
    "type": "object",
    "description": "every error: a message naming the field, and a stable machine code",
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
    "required": ["error", "code"],
}
LOG_LINE_SCHEMA = {
    "type": "object",
    "description": "one line of a replica's log (process `error`: an agent could not be asked)",
    "properties": {
        "replica_id": {"type": "string"},
        "process": {"type": "string", "enum": ["runtime", "sidecar", "error"]},
        "line": {"type": "string"},
    },
    "required": ["replica_id", "process", "line"],
}
MODELS: list[type[BaseModel]] = [
    ActorInfo,
    ActorSpec,
    ActorSummary,
    AgentHeartbeat,
    AgentInfo,
    ApiTokenCreateRequest,
    ApiTokenCreated,
    ApiTokenInfo,
    ApplyResult,
    HeartbeatReply,
    KeypairCreateRequest,
    KeypairCreated,
    KeypairInfo,
    ModelInfo,
    ScaleRequest,
]
PUBLIC: list[dict[str, list[str]]] = []  # `security: []`: no signature needed
OPAQUE = {"type": "object"}


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }


def _list_of(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(model)},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["items", "next_cursor"],
    }


ERROR_MEANINGS = {
    400: "invalid input (the message names the field)",
    401: "missing, malformed or wrong signature (`invalid_signature`)",
    403: "the keypair's role may not do this",
    404: "not found",
    409: "conflict with the current state",
    413: "body larger than 1 MiB",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), ERROR_MEANINGS[s]) for s in statuses}


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _query_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


ACTOR = _path_parameter("name", "the actor's name")
AGENT = _path_parameter("agent_id", "the agent's id")
LOG_PARAMETERS = [
    ACTOR,
    _query_parameter(
        "replica",
        {"type": "string"},
        "only this replica: its id, or a prefix of it (also after `{name}-`) naming one replica",
    ),
    _query_parameter(
        "process",
        {"type": "string", "enum": ["runtime", "sidecar", "all"], "default": "all"},
        "whose log: the runtime's, the sidecar's, or both (runtime first)",
    ),
    _query_parameter(
        "tail",
        {"type": "integer", "minimum": 0, "maximum": 10000, "default": 100},
        "the last N lines of each log (found in its last 4 MiB; older lines are left out)",
    ),
    _query_parameter(
        "follow",
        {"type": "integer", "enum": [0, 1], "default": 0},
        "1: keep streaming appended lines until the client disconnects",
    ),
]


def _admin_paths() -> dict[str, Any]:
    return {
        "/v1/admin/keypairs": {
            "post": {
                "summary": "create a keypair (admins only); the secret key is shown once",
                "requestBody": _body(KeypairCreateRequest, "who the keypair is for and its role"),
                "responses": {
                    "201": _json(_ref(KeypairCreated), "the keypair with its secret key"),
                    **_errors(400, 401, 403, 413),
                },
            },
            "get": {
                "summary": "list keypairs (admins only; never their secrets)",
                "responses": {
                    "200": _json(_list_of(KeypairInfo), "keypairs, oldest first"),
                    **_errors(401, 403),
                },
            },
        },
        "/v1/admin/keypairs/{access_key}": {
            "delete": {
                "summary": "delete a keypair (admins only)",
                "parameters": [_path_parameter("access_key", "the keypair's access key")],
                "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 404)},
            }
        },
        "/v1/admin/tokens": {
            "post": {
                "summary": "issue a gateway API token for a keypair (admins only; shown once)",
                "requestBody": _body(ApiTokenCreateRequest, "the keypair, a name, a lifetime"),
                "responses": {
                    "201": _json(_ref(ApiTokenCreated), "the token (`bai_…`)"),
                    **_errors(400, 401, 403, 404, 413),
                },
            },
            "get": {
                "summary": "list API tokens (admins only; never the tokens themselves)",
                "responses": {
                    "200": _json(_list_of(ApiTokenInfo), "tokens"),
                    **_errors(401, 403),
                },
            },
        },
        "/v1/admin/tokens/{token_id}": {
            "delete": {
                "summary": "revoke an API token (admins only)",
                "parameters": [_path_parameter("token_id", "the token's id")],
                "responses": {"204": {"description": "revoked"}, **_errors(401, 403, 404)},
            }
        },
    }


def _agent_paths() -> dict[str, Any]:
    return {
        "/v1/agents": {
            "get": {
                "summary": "list agents with their slots, devices and replicas",
                "responses": {"200": _json(_list_of(AgentInfo), "agents"), **_errors(401, 403)},
            }
        },
        "/v1/agents/{agent_id}": {
            "get": {
                "summary": "an agent",
                "parameters": [AGENT],
                "responses": {"200": _json(_ref(AgentInfo), "the agent"), **_errors(401, 403, 404)},
            }
        },
        "/v1/agents/{agent_id}/heartbeat": {
            "post": {
                "summary": "an agent's heartbeat (agent keypairs): its state in, desired replicas"
                " out",
                "parameters": [AGENT],
                "requestBody": _body(AgentHeartbeat, "slots, devices, replica reports"),
                "responses": {
                    "200": _json(_ref(HeartbeatReply), "the replicas the agent should run"),
                    **_errors(400, 401, 403, 413),
                },
            }
        },
    }


def _actor_paths() -> dict[str, Any]:
    spec_body = {
        "required": True,
        "description": "an actor spec; `name` may be left out (the URL's is used)",
        "content": {
            "application/json": {"schema": _ref(ActorSpec)},
            "application/yaml": {"schema": _ref(ActorSpec)},
        },
    }
    return {
        "/v1/actors": {
            "get": {
                "summary": "list actors",
                "responses": {
                    "200": _json(_list_of(ActorSummary), "actors by name"),
                    **_errors(401, 403),
                },
            }
        },
        "/v1/actors/{name}": {
            "put": {
                "summary": "apply an actor spec (create, or update: a changed spec bumps"
                " generation)",
                "parameters": [ACTOR],
                "requestBody": spec_body,
                "responses": {
                    "200": _json(_ref(ApplyResult), "updated, or unchanged (`changed: false`)"),
                    "201": _json(_ref(ApplyResult), "created"),
                    **_errors(400, 401, 403, 409, 413),
                },
            },
            "get": {
                "summary": "an actor: spec, replicas, queue depth, recent scheduler events",
                "parameters": [ACTOR],
                "responses": {"200": _json(_ref(ActorInfo), "the actor"), **_errors(401, 403, 404)},
            },
            "delete": {
                "summary": "delete an actor: its replicas drain, then it goes",
                "parameters": [ACTOR],
                "responses": {
                    "202": _json(_ref(ActorSummary), "draining"),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/v1/actors/{name}/scale": {
            "post": {
                "summary": "pin the replica count (autoscaling off), or hand it back (`auto`)",
                "parameters": [ACTOR],
                "requestBody": _body(ScaleRequest, '`{"replicas": N}` or `{"replicas": "auto"}`'),
                "responses": {
                    "200": _json(_ref(ActorSummary), "the actor"),
                    **_errors(400, 401, 403, 404, 409, 413),
                },
            }
        },
        "/v1/actors/{name}/logs": {
            "get": {
                "summary": "the logs of the actor's replicas, read from their agents (NDJSON)",
                "parameters": LOG_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "one LogLine per line (`application/x-ndjson`, chunked);"
                        " while following, an empty line every 15 s of silence",
                        "content": {"application/x-ndjson": {"schema": _ref("LogLine")}},
                    },
                    **_errors(400, 401, 403, 404),
                    "429": _json(
                        _ref("Error"),
                        "follow=1 while this access key already follows as many streams as"
                        " it may at once (16 by default; `too_many_requests`)",
                    ),
                },
            }
        },
    }


def _model_paths() -> dict[str, Any]:
    versions = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": _ref(ModelInfo)},
        },
        "required": ["name", "versions"],
    }
    return {
        "/v1/models": {
            "get": {
                "summary": "the model registry (users, admins and gateway keypairs)",
                "responses": {"200": _json(_list_of(ModelInfo), "models"), **_errors(401, 403)},
            }
        },
        "/v1/models/{name}": {
            "get": {
                "summary": "one model's versions",
                "parameters": [_path_parameter("name", "the model's name")],
                "responses": {"200": _json(versions, "the model"), **_errors(401, 403, 404)},
            }
        },
    }


def _public_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "summary": "health, and whether this manager leads the scheduling",
                "security": PUBLIC,
                "responses": {"200": _json(OPAQUE, '{"status": "ok", "leader", "version"}')},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": PUBLIC,
                "responses": {"200": {"description": "Prometheus text format"}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "security": PUBLIC,
                "responses": {"200": _json(OPAQUE, "OpenAPI 3.1")},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "LogLine": LOG_LINE_SCHEMA}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backend.AI Actors manager",
            "version": __version__,
            "description": "The control plane's REST API. Every route but the public ones is"
            " signed with a keypair (HMAC-SHA256, Backend.AI's scheme).",
        },
        "paths": {
            **_public_paths(),
            **_admin_paths(),
            **_agent_paths(),
            **_actor_paths(),
            **_model_paths(),
        },
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "hmac": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`BackendAI signMethod=HMAC-SHA256, credential=<access_key>:"
                    "<signature>` with `Date` / `X-BackendAI-Date` and `X-BackendAI-Version`",
                }
            },
        },
        "security": [{"hmac": []}],
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)

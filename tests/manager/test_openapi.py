"""The manager's ``GET /openapi.json`` documents every route it serves, and ``docs/rest-api.md``
is what ``docs/gen_rest_api.py`` makes of the manager's and the gateway's documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docs.gen_rest_api as gen_rest_api

from ai.backend.manager.api.openapi import openapi_document
from ai.backend.manager.config import ManagerConfig
from ai.backend.manager.server import build_app
from ai.backend.testutils.control_plane import RunningManager

METHODS = {"get", "put", "post", "delete", "patch"}


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def test_the_document_has_every_route_of_the_router_and_no_other() -> None:
    app = build_app(ManagerConfig())
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    paths = openapi_document()["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item}
    assert documented == routed


def test_every_operation_has_a_summary_and_responses_and_every_reference_resolves() -> None:
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            assert operation["summary"] and operation["responses"], (path, method)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}
    schemas = document["components"]["schemas"]
    missing = {
        ref
        for ref in _references(document)
        if ref.removeprefix("#/components/schemas/") not in schemas
    }
    assert missing == set()


async def test_the_manager_serves_the_document_without_a_signature(manager: RunningManager) -> None:
    async with manager.session.get(f"{manager.endpoint}/openapi.json") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        served = await response.json()
    assert served["openapi"] == "3.1.0"
    assert served == openapi_document()
    assert served["paths"]["/v1/actors/{name}/logs"]["get"]["responses"]["200"]["content"] == {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/LogLine"}}
    }


def test_the_committed_rest_api_reference_is_the_generators_output() -> None:
    committed = Path(gen_rest_api.__file__).parent / "rest-api.md"
    assert (
        committed.read_text() == gen_rest_api.render_markdown()
    ), "docs/rest-api.md is out of date: run ./py docs/gen_rest_api.py"

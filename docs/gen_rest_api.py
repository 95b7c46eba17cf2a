"""Write ``docs/rest-api.md`` from the OpenAPI documents of the manager and the gateway.

    ./py docs/gen_rest_api.py            # (re)write docs/rest-api.md
    ./py docs/gen_rest_api.py --check    # exit 1 when docs/rest-api.md is out of date

The documents are built in-process, by the same functions that serve ``GET /openapi.json`` on
each service, so no server needs to run. ``tests/manager/test_openapi.py`` fails when the
committed file differs from what this writes: change a route, regenerate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai.backend.gateway.api.openapi import openapi_document as gateway_document
from ai.backend.manager.api.openapi import openapi_document as manager_document

OUTPUT = Path(__file__).resolve().parent / "rest-api.md"
METHODS = ("get", "put", "post", "delete", "patch")
SCHEMA_REF = "#/components/schemas/"


@dataclass(frozen=True)
class Service:
    key: str  # anchor prefix
    title: str
    port: str
    about: str
    document: Callable[[], dict[str, Any]]


SERVICES = [
    Service(
        "manager",
        "Manager",
        "8081",
        "Actors, agents, keypairs and the model registry. Every route but `/health`, `/metrics`"
        " and `/openapi.json` is signed with a keypair (HMAC-SHA256; the SDK and `./backend.ai`"
        " sign for you).",
        manager_document,
    ),
    Service(
        "gateway",
        "Gateway",
        "8090",
        "Jobs, tools, MCP and KServe v2 inference. Authenticated with `Authorization: Bearer"
        " <token>` (an API token issued by the manager) or the manager's HMAC signature.",
        gateway_document,
    ),
]


def _cell(text: str) -> str:
    """Text for one table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


class Renderer:
    """Markdown for one service's document; schema names link to its schema section."""

    def __init__(self, service: Service, document: dict[str, Any]) -> None:
        self.service = service
        self.document = document
        self.schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def anchor(self, name: str) -> str:
        return f"{self.service.key}-{name.lower()}"

    def type_of(self, schema: Any) -> str:
        """A short, readable type: ``string``, ``array of ActorInfo`` (linked), ``"a" | "b"``."""
        if not isinstance(schema, dict) or not schema:
            return "any"
        if "$ref" in schema:
            name = str(schema["$ref"]).removeprefix(SCHEMA_REF)
            return f"[`{name}`](#{self.anchor(name)})"
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                return " | ".join(self.type_of(part) for part in schema[key])
        if "const" in schema:
            return f"`{_json_literal(schema['const'])}`"
        if "enum" in schema:
            return " | ".join(f"`{_json_literal(value)}`" for value in schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.type_of({**schema, "type": one}) for one in kind)
        if kind == "array":
            return f"array of {self.type_of(schema.get('items'))}"
        if kind == "object":
            return self._object_type(schema)
        if kind is None:
            return "any"
        fmt = schema.get("format")
        return f"{kind} ({fmt})" if fmt else str(kind)

    def _object_type(self, schema: dict[str, Any]) -> str:
        properties = schema.get("properties")
        if properties:
            fields = ", ".join(f"`{k}`: {self.type_of(v)}" for k, v in properties.items())
            return f"{{{fields}}}"
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"object of {self.type_of(extra)}"
        return "object"

    def route(self, method: str, path: str, operation: dict[str, Any]) -> list[str]:
        lines = [f"### `{method.upper()} {path}`", "", operation.get("summary", ""), ""]
        if operation.get("security") == []:
            lines += ["Public: no authentication.", ""]
        parameters = operation.get("parameters", [])
        if parameters:
            lines += [
                "| parameter | in | type | required | default | description |",
                "|---|---|---|---|---|---|",
            ]
            for parameter in parameters:
                schema = parameter.get("schema", {})
                lines.append(
                    f"| `{parameter['name']}` | {parameter['in']} | {_cell(self.type_of(schema))}"
                    f" | {'yes' if parameter.get('required') else 'no'} | {_default(schema)}"
                    f" | {_cell(parameter.get('description', ''))} |"
                )
            lines.append("")
        body = operation.get("requestBody")
        if body:
            contents = "; ".join(
                f"`{media}`: {self.type_of(content.get('schema'))}"
                for media, content in body.get("content", {}).items()
            )
            description = body.get("description", "")
            lines += [f"Request body ({contents}){': ' + description if description else ''}", ""]
        lines += ["| status | body | meaning |", "|---|---|---|"]
        for status, response in operation.get("responses", {}).items():
            contents = "; ".join(
                f"`{media}`: {self.type_of(content.get('schema'))}"
                for media, content in response.get("content", {}).items()
            )
            lines.append(
                f"| {status} | {_cell(contents) or '—'}"
                f" | {_cell(response.get('description', ''))} |"
            )
        return [*lines, ""]

    def schema(self, name: str, schema: dict[str, Any]) -> list[str]:
        lines = [f'<a id="{self.anchor(name)}"></a>', "", f"#### `{name}`", ""]
        description = schema.get("description")
        if description:
            lines += [" ".join(description.split()), ""]
        properties = schema.get("properties")
        if not properties:
            return [*lines, f"Type: {self.type_of(schema)}", ""]
        required = set(schema.get("required", []))
        lines += [
            "| field | type | required | default | description |",
            "|---|---|---|---|---|",
        ]
        for field, field_schema in properties.items():
            lines.append(
                f"| `{field}` | {_cell(self.type_of(field_schema))}"
                f" | {'yes' if field in required else 'no'} | {_default(field_schema)}"
                f" | {_cell(field_schema.get('description', ''))} |"
            )
        return [*lines, ""]

    def render(self) -> list[str]:
        service = self.service
        lines = [f"## {service.title} (`:{service.port}`)", "", service.about, ""]
        for path, operations in self.document["paths"].items():
            for method in METHODS:
                if method in operations:
                    lines += self.route(method, path, operations[method])
        lines += [f"### Schemas ({service.title.lower()})", ""]
        for name, schema in self.schemas.items():
            lines += self.schema(name, schema)
        return lines


def _json_literal(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default(schema: dict[str, Any]) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if isinstance(value, dict | list):
        return _cell(f"`{json.dumps(value)}`")
    return f"`{_json_literal(value)}`"


def _index(services: Iterable[tuple[Service, dict[str, Any]]]) -> list[str]:
    lines = []
    for service, document in services:
        routes = [
            f"`{method.upper()} {path}`"
            for path, operations in document["paths"].items()
            for method in METHODS
            if method in operations
        ]
        lines.append(f"- **{service.title}** (`:{service.port}`): {', '.join(routes)}")
    return lines


def render_markdown() -> str:
    built = [(service, service.document()) for service in SERVICES]
    lines = [
        "# REST API reference",
        "",
        "<!-- Generated by `./py docs/gen_rest_api.py` from the services' OpenAPI documents;"
        " do not edit by hand. -->",
        "",
        "Each service also serves its document as OpenAPI 3.1 at `GET /openapi.json`. Errors are"
        ' always `{"error": "<message naming the field>", "code": "<machine code>"}`; lists are'
        ' `{"items": [...], "next_cursor": ...}`. The Python SDK (`ai.backend.client`) and the'
        " `./backend.ai` commands call these routes for you.",
        "",
        *_index(built),
        "",
    ]
    for service, document in built:
        lines += Renderer(service, document).render()
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run ./py docs/gen_rest_api.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

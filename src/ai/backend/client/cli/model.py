"""``backend.ai model …``: the KServe v2 model registry and inference through the gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .base import EXIT_CODES_HELP, ExitCode, client_group, fail, run_session
from .output import compact_json, json_option, print_json, print_table
from .params import ASSIGNMENT, TENSOR

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.common.dto.manager_api import ModelInfo


@client_group(epilog=EXIT_CODES_HELP)
def model() -> None:
    """Models: KServe v2 models that actors serve (`@app.model` in a handler module).

    \b
    backend.ai model ls
    backend.ai model infer echo --input 'INPUT0:FP32:3:[1,2,3]'
    backend.ai model infer echo --json-body request.json
    """


def _tensors_text(tensors: Any) -> str:
    if not isinstance(tensors, list) or not tensors:
        return "-"
    return ", ".join(
        f"{t.get('name')}:{t.get('datatype')}{t.get('shape')}" if isinstance(t, dict) else str(t)
        for t in tensors
    )


@model.command("ls")
@json_option
def list_models(as_json: bool) -> None:
    """List the models in the registry.

    Name, version, the actor that serves it, and its input and output tensors.
    """

    async def work(session: AsyncSession) -> list[ModelInfo]:
        return list(await session.models.list())

    models = run_session(work)
    if as_json:
        print_json(models)
        return
    print_table(
        ["NAME", "VERSION", "ACTOR", "INPUTS", "OUTPUTS"],
        (
            [
                m.name,
                m.version,
                m.actor_name,
                _tensors_text(m.metadata.get("inputs")),
                _tensors_text(m.metadata.get("outputs")),
            ]
            for m in models
        ),
        empty="no models: an actor registers them with `@app.model` in its handler module",
    )


def _read_body(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as e:
        fail(f"--json-body: cannot read {source}: {e.strerror}", ExitCode.USAGE)
    try:
        body = json.loads(text)
    except ValueError as e:
        fail(f"--json-body: {source} is not valid JSON: {e}", ExitCode.USAGE)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        fail(
            f'--json-body: expected a KServe v2 request {{"inputs": [...]}} in {source}',
            ExitCode.USAGE,
        )
    return body


@model.command("infer")
@click.argument("name")
@click.option(
    "-i",
    "--input",
    "tensors",
    multiple=True,
    type=TENSOR,
    help="An input tensor NAME:DATATYPE:SHAPE:DATA, e.g. INPUT0:FP32:2,2:[[1,2],[3,4]]"
    " (DATA is JSON, nested lists row-major). Repeat for several inputs.",
)
@click.option(
    "--json-body",
    metavar="FILE",
    default=None,
    help='A whole KServe v2 request body {"inputs": [...], "parameters": {...}} from FILE'
    " (- reads stdin), instead of --input.",
)
@click.option("--version", "model_version", default=None, help="A version of the model.")
@click.option(
    "--parameter",
    "parameters",
    multiple=True,
    type=ASSIGNMENT,
    help="A request parameter KEY=VALUE (VALUE read as JSON when valid).",
)
@json_option
def infer(
    name: str,
    tensors: tuple[dict[str, Any], ...],
    json_body: str | None,
    model_version: str | None,
    parameters: tuple[tuple[str, Any], ...],
    as_json: bool,
) -> None:
    """Run an inference on a model and print its outputs.

    A KServe v2 request to the gateway, with the inputs from --input (or --json-body);
    the outputs are printed as a table, or as the v2 response with --json.
    """
    if bool(tensors) == (json_body is not None):
        raise click.UsageError("give the inputs with --input (one or more) or with --json-body")
    body = _read_body(json_body) if json_body is not None else {"inputs": list(tensors)}
    given = body.get("parameters")
    merged_parameters = {**(given if isinstance(given, dict) else {}), **dict(parameters)}

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await session.models.infer(
            name,
            body["inputs"],
            version=model_version,
            parameters=merged_parameters or None,
            outputs=body.get("outputs"),
        )

    response = run_session(work)
    if as_json:
        print_json(response)
        return
    print_table(
        ["OUTPUT", "DATATYPE", "SHAPE", "DATA"],
        (
            [
                o.get("name"),
                o.get("datatype"),
                compact_json(o.get("shape")),
                compact_json(o.get("data"), limit=200),
            ]
            for o in response.get("outputs") or []
        ),
        title=f"{response.get('model_name', name)} (version {response.get('model_version', '-')})",
        empty="the model returned no outputs",
    )

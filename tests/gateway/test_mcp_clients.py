"""The official MCP SDK clients, unmodified, against a real gateway whose tools run on real
actors: mcp 1.x (handshake era) and mcp 2.x in each of its modes list the tools, call one with
a progress callback, and see invalid arguments as an error result and an unknown tool as a
JSON-RPC error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import examples.pipeline  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import pytest

from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import (
    PIPELINE_ACTORS,
    RunningGateway,
    SharedStack,
    gateway_on_actors,
    shared_stack,
)
from ai.backend.testutils.mcp import MCP1_CLIENT, MCP2_CLIENT, ClientReport, run_client

OPERATIONS: list[dict[str, Any]] = [
    {"op": "list"},
    {
        "op": "call",
        "tool": "double_then_increment",
        "arguments": {"value": 10},
        "progress": True,
    },
    {"op": "call", "tool": "double_then_increment", "arguments": {"value": "ten"}},
    {"op": "call", "tool": "nope", "arguments": {}},
    {"op": "call", "tool": "double", "arguments": {}},
]


async def _tools_on_actors(cluster: Cluster) -> RunningGateway:
    return await gateway_on_actors(cluster, PIPELINE_ACTORS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack[RunningGateway]]:
    """One stack for every client: each only lists and calls tools, and checks its own calls."""
    with shared_stack(tmp_path_factory.mktemp("stack"), _tools_on_actors) as stack:
        yield stack


def _check(report: ClientReport) -> None:
    listed, called, invalid, unknown, defaulted = report.results
    assert [tool["name"] for tool in listed["result"]["tools"]] == [
        "double",
        "double_then_increment",
        "get_job",
        "cancel_job",
    ]
    assert called["result"]["isError"] is False
    assert called["result"]["structuredContent"] == {"value": 25}
    assert called["result"]["content"] == [{"type": "text", "text": '{"value":25}'}]
    progress = called["progress"]
    assert [value for value, _, _ in progress] == [0, 1, 2]  # hop 1, hop 2, done
    assert {total for _, total, _ in progress} == {2}
    assert progress[0][2].startswith("doubler running")
    assert invalid["result"]["isError"] is True
    assert invalid["result"]["content"][0]["text"].startswith("arguments.value:")
    assert unknown["error"]["code"] == -32602
    assert unknown["error"]["message"] == "Unknown tool: nope"
    assert defaulted["result"]["structuredContent"] == {"value": 42}  # the default 21, doubled


async def test_the_mcp1_client_lists_calls_with_progress_and_sees_errors(
    gateway: RunningGateway,
) -> None:
    report = await run_client(MCP1_CLIENT, f"{gateway.url}/mcp", OPERATIONS)
    assert report.protocol_version == "2025-11-25"
    assert report.server_info is not None and report.server_info["name"] == "backend.ai-gateway"
    _check(report)


@pytest.mark.parametrize(
    ("mode", "negotiated"),
    [("auto", "2026-07-28"), ("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28")],
)
async def test_the_mcp2_client_in_each_mode_lists_calls_with_progress_and_sees_errors(
    gateway: RunningGateway, mode: str, negotiated: str
) -> None:
    report = await run_client(MCP2_CLIENT, f"{gateway.url}/mcp", OPERATIONS, mode=mode)
    assert report.protocol_version == negotiated
    _check(report)

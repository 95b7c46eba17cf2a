"""``/mcp`` over raw HTTP against a real gateway process: what no SDK client sends (foreign
origins, routing headers that disagree with the body, malformed bodies, sessions that do not
exist) is answered with the exact status and JSON-RPC error code of the specification; a call
whose job exists but cannot be bound to its session answers with the job's handle."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import (
    RunningGateway,
    SharedStack,
    gateway_for,
    shared_stack,
    write_tools,
)
from ai.backend.testutils.mcp import MODERN_META, RawMcp
from ai.backend.testutils.waiting import wait_until


async def _tools_gateway(cluster: Cluster) -> RunningGateway:
    """A gateway with the test tools (no actor runs: no job here gets further than pending)."""
    return await gateway_for(cluster, write_tools(cluster.workdir / "tools.yaml"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack[RunningGateway]]:
    """One gateway for the module: each test opens sessions of its own and counts only the jobs
    it started."""
    with shared_stack(tmp_path_factory.mktemp("stack"), _tools_gateway) as stack:
        yield stack


@pytest.fixture
async def mcp(gateway: RunningGateway) -> AsyncIterator[RawMcp]:
    async with aiohttp.ClientSession() as session:
        yield RawMcp(session, f"{gateway.url}/mcp")


async def test_a_foreign_origin_is_refused_with_403_on_every_method(mcp: RawMcp) -> None:
    evil = {"Origin": "https://evil.example"}
    for method in ("POST", "GET", "DELETE"):
        reply = await mcp.send(
            method, body={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=evil
        )
        assert reply.status == 403, method
        assert reply.body["error"]["code"] == -32600
    reply = await mcp.modern("server/discover", headers={"Origin": "http://localhost:6274"})
    assert reply.status == 200


async def test_malformed_bodies_are_json_rpc_errors_with_400(mcp: RawMcp) -> None:
    cases = [
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', -32700),
        (b"", -32700),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600),
        (b'{"hello": "world"}', -32600),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', -32600),
    ]
    for raw, code in cases:
        reply = await mcp.send(raw=raw)
        assert (reply.status, reply.body["error"]["code"], reply.body["id"]) == (400, code, None)


async def test_modern_routing_headers_must_match_the_body(mcp: RawMcp) -> None:
    wrong_method = await mcp.modern("tools/list", headers={"Mcp-Method": "tools/call"})
    no_version = await mcp.send(
        body={"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": {"_meta": MODERN_META}},
        headers={"Mcp-Method": "tools/list"},
    )
    wrong_name = await mcp.modern(
        "tools/call", {"name": "double", "arguments": {}}, headers={"Mcp-Name": "other"}
    )
    for reply, request_id in ((wrong_method, 1), (no_version, 0), (wrong_name, 1)):
        assert reply.status == 400
        assert reply.body["id"] == request_id
        assert reply.body["error"]["code"] == -32020


async def test_an_unsupported_version_is_400_naming_the_supported_ones(mcp: RawMcp) -> None:
    reply = await mcp.send(
        body={
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/list",
            "params": {
                "_meta": {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
            },
        },
        headers={"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"},
    )
    assert reply.status == 400
    assert reply.body["error"]["code"] == -32022
    assert reply.body["error"]["data"]["requested"] == "2099-01-01"
    assert "2026-07-28" in reply.body["error"]["data"]["supported"]


async def test_modern_discover_and_lists_carry_result_type_ttl_and_server_info(
    mcp: RawMcp,
) -> None:
    discover = await mcp.modern("server/discover")
    assert discover.status == 200
    result = discover.body["result"]
    assert result["supportedVersions"] == ["2026-07-28"]
    assert (result["resultType"], result["cacheScope"]) == ("complete", "private")
    assert result["ttlMs"] >= 0
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "backend.ai-gateway"
    listed = (await mcp.modern("tools/list", request_id=0)).body
    assert listed["id"] == 0
    assert [tool["name"] for tool in listed["result"]["tools"]] == [
        "double",
        "double_then_increment",
        "get_job",
        "cancel_job",
    ]
    assert listed["result"]["tools"][0]["inputSchema"]["properties"]["value"]["default"] == 21
    assert {"resultType", "ttlMs", "cacheScope", "_meta"} <= set(listed["result"])


async def test_a_modern_unknown_method_is_404_and_get_and_delete_are_405(mcp: RawMcp) -> None:
    unknown = await mcp.modern("resources/list")
    assert (unknown.status, unknown.body["error"]["code"]) == (404, -32601)
    assert (await mcp.send("GET")).status == 405
    delete = await mcp.send("DELETE", headers={"MCP-Protocol-Version": "2026-07-28"})
    assert delete.status == 405


async def test_an_unknown_tool_is_a_json_rpc_error_in_both_eras(mcp: RawMcp) -> None:
    modern = await mcp.modern("tools/call", {"name": "nope", "arguments": {}})
    assert modern.status == 400
    assert modern.body["error"] == {"code": -32602, "message": "Unknown tool: nope"}
    session_id = await mcp.initialize()
    legacy = await mcp.legacy(
        "tools/call", {"name": "nope", "arguments": {}}, session_id=session_id, request_id=0
    )
    assert legacy.status == 200
    assert legacy.body["id"] == 0
    assert legacy.body["error"] == {"code": -32602, "message": "Unknown tool: nope"}


async def test_invalid_arguments_are_an_error_result_naming_the_field(mcp: RawMcp) -> None:
    reply = await mcp.modern("tools/call", {"name": "double", "arguments": {"value": "ten"}})
    assert reply.status == 200
    result = reply.body["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("arguments.value:")
    assert result["resultType"] == "complete"


async def test_a_legacy_session_from_initialize_to_delete(mcp: RawMcp) -> None:
    missing = await mcp.legacy("tools/list", session_id=None)
    assert (missing.status, missing.body["error"]["code"]) == (400, -32600)
    unknown = await mcp.legacy("tools/list", session_id="0" * 32)
    assert (unknown.status, unknown.body["error"]["code"]) == (404, -32600)

    session_id = await mcp.initialize(version="2025-06-18")
    initialized = await mcp.legacy(
        "notifications/initialized",
        session_id=session_id,
        request_id=None,
        headers={"MCP-Protocol-Version": "2025-06-18"},
    )
    assert initialized.status == 202
    ping = await mcp.legacy(
        "ping", session_id=session_id, request_id=0, headers={"MCP-Protocol-Version": "2025-06-18"}
    )
    assert (ping.status, ping.body) == (200, {"jsonrpc": "2.0", "id": 0, "result": {}})
    other_version = await mcp.legacy("ping", session_id=session_id)  # sends 2025-11-25
    assert (other_version.status, other_version.body["error"]["code"]) == (400, -32600)
    no_version = await mcp.send(
        body={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers={"Mcp-Session-Id": session_id}
    )
    assert no_version.status == 200  # absent: 2025-03-26 is assumed, as the spec says
    assert (await mcp.send("GET", headers={"Mcp-Session-Id": session_id})).status == 405

    ended = await mcp.send("DELETE", headers={"Mcp-Session-Id": session_id})
    assert ended.status == 200
    after = await mcp.legacy(
        "ping", session_id=session_id, headers={"MCP-Protocol-Version": "2025-06-18"}
    )
    assert after.status == 404


async def test_initialize_answers_a_supported_version_or_the_latest(mcp: RawMcp) -> None:
    for requested, answered in (("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-11-25")):
        reply = await mcp.send(
            body={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": requested, "capabilities": {}},
            }
        )
        assert reply.status == 200
        assert reply.body["result"]["protocolVersion"] == answered
        assert reply.body["result"]["capabilities"] == {"tools": {"listChanged": False}}
        assert len(reply.headers["Mcp-Session-Id"]) == 32


async def test_a_legacy_session_opened_on_one_replica_works_on_another(
    mcp: RawMcp, gateway: RunningGateway, shared_cluster: Cluster
) -> None:
    tools = Path(gateway.env["BACKEND_TOOLS__PATH"])
    other = await gateway_for(shared_cluster, tools, name="gateway-2", gateway_id="gw-test-2")
    session_id = await mcp.initialize()
    second = RawMcp(mcp.session, f"{other.url}/mcp")
    listed = await second.legacy("tools/list", session_id=session_id)
    assert listed.status == 200
    assert [tool["name"] for tool in listed.body["result"]["tools"]][-2:] == [
        "get_job",
        "cancel_job",
    ]
    assert (await second.send("DELETE", headers={"Mcp-Session-Id": session_id})).status == 200
    assert (await mcp.legacy("tools/list", session_id=session_id)).status == 404
    other.child.kill(signal.SIGTERM)


async def test_a_job_that_cannot_be_bound_to_its_session_answers_with_its_handle(
    mcp: RawMcp, gateway: RunningGateway, shared_cluster: Cluster
) -> None:
    """Redis fails between the job's creation and its binding to the call: the client gets the
    job's handle (a retry would start a second job), not an internal error."""
    status, page = await gateway.get("/v1/jobs?limit=500")
    assert status == 200 and page["next_cursor"] is None
    earlier = {job["id"] for job in page["items"]}
    session_id = await mcp.initialize()
    requests = f"{shared_cluster.manager.prefix}mcp:session:{session_id}:requests"
    redis_client = shared_cluster.plane.redis
    engine = create_async_engine(shared_cluster.manager.database_url)
    try:
        async with engine.begin() as connection:
            # the job's insert waits for this lock: the call is held after begin_request
            await connection.execute(sa.text("LOCK TABLE jobs IN EXCLUSIVE MODE"))
            call = asyncio.create_task(
                mcp.legacy(
                    "tools/call",
                    {"name": "double", "arguments": {"value": 2}},
                    session_id=session_id,
                    request_id=3,
                )
            )
            await wait_until(
                lambda: redis_client.hget(requests, "3"),
                what="the call to be recorded in its session",
                watch=[gateway.child],
            )
            # every write to the session's requests now fails (WRONGTYPE), attach_job first
            await redis_client.set(requests, b"not a hash")
    finally:
        await engine.dispose()
    reply = await call
    assert reply.status == 200
    assert "error" not in reply.body, reply.body
    result = reply.body["result"]
    handle = result["structuredContent"]
    assert (result["isError"], handle["status"]) == (False, "pending")
    status, page = await gateway.get("/v1/jobs?limit=500")
    assert status == 200
    started = [(job["id"], job["status"]) for job in page["items"] if job["id"] not in earlier]
    assert started == [(handle["job_id"], "pending")]
    assert "could not bind job" in gateway.child.log()

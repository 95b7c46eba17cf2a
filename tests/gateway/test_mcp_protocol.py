"""The pure parts of the MCP endpoint: JSON-RPC parsing, era detection and the modern envelope
ladder, the Origin check, tool results, and the mapping of job events to progress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ai.backend.common.dto.gateway_api import JobInfo, StoredJobEvent
from ai.backend.common.dto.job_event import JobEventKind, JobStatus
from ai.backend.gateway.api.mcp.envelope import (
    Era,
    check_modern_request,
    decode_header_value,
    era_of,
    origin_allowed,
)
from ai.backend.gateway.api.mcp.protocol import (
    HEADER_MISMATCH,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ClientResponse,
    McpError,
    Notification,
    Request,
    parse_message,
)
from ai.backend.gateway.api.mcp.results import ProgressTracker, job_result
from ai.backend.gateway.config import DEFAULT_ALLOWED_ORIGINS

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
HEADERS = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "double"}
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def test_a_request_with_id_zero_is_a_request() -> None:
    message = parse_message(b'{"jsonrpc": "2.0", "id": 0, "method": "ping"}')
    assert message == Request(0, "ping", {})


def test_messages_without_id_are_notifications_and_results_are_client_responses() -> None:
    assert parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') == (
        Notification("notifications/initialized", {})
    )
    assert parse_message(b'{"jsonrpc":"2.0","id":"a","result":{}}') == ClientResponse("a")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": ', PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', INVALID_REQUEST),
        (b'"ping"', INVALID_REQUEST),
        (b'{"id": 1, "method": "ping"}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 7}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 1}', INVALID_REQUEST),
    ],
)
def test_bodies_that_are_not_one_json_rpc_message_are_400_errors(body: bytes, code: int) -> None:
    with pytest.raises(McpError) as raised:
        parse_message(body)
    assert (raised.value.code, raised.value.http_status) == (code, 400)


def test_the_era_follows_the_version_header_or_the_meta_version() -> None:
    legacy_call = Request(1, "tools/call", {"name": "x", "_meta": {"progressToken": 1}})
    assert era_of({}, legacy_call) is Era.LEGACY
    assert era_of({"MCP-Protocol-Version": "2025-06-18"}, legacy_call) is Era.LEGACY
    assert era_of({"MCP-Protocol-Version": "2026-07-28"}, legacy_call) is Era.MODERN
    assert era_of({"MCP-Protocol-Version": "2099-01-01"}, legacy_call) is Era.MODERN
    assert era_of({}, Request(1, "tools/list", {"_meta": META})) is Era.MODERN


def test_a_modern_request_whose_headers_match_passes_the_ladder() -> None:
    request = Request(1, "tools/call", {"name": "double", "_meta": META})
    envelope = check_modern_request(HEADERS, request)
    assert envelope.protocol_version == "2026-07-28"


@pytest.mark.parametrize(
    "headers",
    [
        {**HEADERS, "MCP-Protocol-Version": "2025-11-25"},
        {"Mcp-Method": "tools/call", "Mcp-Name": "double"},
        {**HEADERS, "Mcp-Method": "tools/list"},
        {**HEADERS, "Mcp-Name": "other"},
        {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"},
    ],
)
def test_routing_headers_that_disagree_with_the_body_are_header_mismatches(
    headers: dict[str, str],
) -> None:
    request = Request(1, "tools/call", {"name": "double", "_meta": META})
    with pytest.raises(McpError) as raised:
        check_modern_request(headers, request)
    assert (raised.value.code, raised.value.http_status) == (HEADER_MISMATCH, 400)


def test_a_base64_name_header_matches_a_non_ascii_tool_name() -> None:
    assert decode_header_value("=?base64?w6lsw6h2ZQ==?=") == "élève"
    assert decode_header_value("=?base64?not base64?=") is None
    request = Request(1, "tools/call", {"name": "élève", "_meta": META})
    check_modern_request({**HEADERS, "Mcp-Name": "=?base64?w6lsw6h2ZQ==?="}, request)


def test_an_unsupported_version_names_every_supported_one() -> None:
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    request = Request(1, "tools/list", {"_meta": meta})
    headers = {"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}
    with pytest.raises(McpError) as raised:
        check_modern_request(headers, request)
    assert raised.value.code == UNSUPPORTED_PROTOCOL_VERSION
    assert raised.value.data == {
        "supported": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
        "requested": "2099-01-01",
    }


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost", True),
        ("http://localhost:6274", True),
        ("https://127.0.0.1:8443", True),
        ("http://[::1]:3000", True),
        ("https://localhost.evil.example", False),
        ("http://evil.example", False),
        ("ftp://localhost", False),
        ("null", False),
    ],
)
def test_origins_are_allowed_by_scheme_and_host_on_any_port(
    origin: str | None, allowed: bool
) -> None:
    assert origin_allowed(origin, DEFAULT_ALLOWED_ORIGINS) is allowed


def _job(status: JobStatus, **fields: Any) -> JobInfo:
    return JobInfo(
        id="j1",
        status=status,
        tool="double",
        route=["doubler"],
        arguments={},
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


HANDLE = {"job_id": "j1", "status": "running", "status_url": "u", "stream_url": "s"}


def test_a_job_result_carries_text_and_structured_content() -> None:
    assert job_result(_job(JobStatus.SUCCEEDED, result={"value": 4}), HANDLE) == {
        "content": [{"type": "text", "text": '{"value":4}'}],
        "structuredContent": {"value": 4},
        "isError": False,
    }
    scalar = job_result(_job(JobStatus.SUCCEEDED, result=7), HANDLE)
    assert scalar["structuredContent"] == {"result": 7}


def test_failed_and_cancelled_jobs_are_error_results_and_running_ones_their_handle() -> None:
    error = {"code": "processing_error", "message": "division by zero"}
    failed = job_result(_job(JobStatus.FAILED, error=error), HANDLE)
    assert failed["isError"] is True
    assert failed["content"][0]["text"] == "division by zero"
    assert job_result(_job(JobStatus.CANCELLED), HANDLE)["isError"] is True
    running = job_result(_job(JobStatus.RUNNING), HANDLE)
    assert (running["isError"], running["structuredContent"]) == (False, HANDLE)
    assert "get_job" in running["content"][0]["text"]


def _event(seq: int, kind: JobEventKind, step: int | None, data: Any = None) -> StoredJobEvent:
    body: dict[str, Any] = {"kind": kind.value, "actor": "a"}
    if step is not None:
        body |= {"step": step, "total": 3}
    if data is not None:
        body["data"] = data
    return StoredJobEvent(job_id="j1", seq=seq, kind=kind, data=body, at=NOW)


def _progress(events: list[StoredJobEvent], hops: int = 3) -> list[float | None]:
    tracker = ProgressTracker(hops=hops)
    return [None if (u := tracker.feed(e)) is None else u.progress for e in events]


def test_hop_k_of_n_spans_k_minus_one_to_k_and_success_reports_n() -> None:
    events = [
        _event(1, JobEventKind.RUNNING, 1),
        _event(2, JobEventKind.PROGRESS, 1, {"progress": 1, "total": 4, "message": "a quarter"}),
        _event(3, JobEventKind.RUNNING, 2),
        _event(4, JobEventKind.RUNNING, 3),
        _event(5, JobEventKind.SUCCEEDED, None, None),
    ]
    assert _progress(events) == [0.0, 0.25, 1.0, 2.0, 3.0]


def test_partials_advance_by_shrinking_steps_that_never_reach_the_next_hop() -> None:
    partials = [_event(i + 2, JobEventKind.PARTIAL, 2, {"token": f"w{i}"}) for i in range(1000)]
    values = _progress([_event(1, JobEventKind.RUNNING, 2), *partials])
    assert values[:4] == pytest.approx([1.0, 1.5, 1 + 2 / 3, 1.75])
    assert all(b is not None and a is not None and a < b < 2 for a, b in zip(values, values[1:]))


def test_updates_that_would_not_increase_progress_are_dropped() -> None:
    events = [
        _event(1, JobEventKind.RUNNING, 1),
        _event(2, JobEventKind.PARTIAL, 1, "x"),
        _event(3, JobEventKind.PROGRESS, 1, {"progress": 1, "total": 10}),  # below the partial
        _event(4, JobEventKind.RUNNING, 1),  # a retry of hop 1
        _event(5, JobEventKind.FAILED, None),
    ]
    assert _progress(events) == [0.0, 0.5, None, None, None]


def test_a_partial_is_reported_as_its_text() -> None:
    tracker = ProgressTracker(hops=1)
    tracker.feed(_event(1, JobEventKind.RUNNING, 1))
    update = tracker.feed(_event(2, JobEventKind.PARTIAL, 1, {"token": "hello"}))
    assert update is not None and update.message == "hello"
    update = tracker.feed(_event(3, JobEventKind.PARTIAL, 1, {"a": 1, "b": 2}))
    assert update is not None and update.message == '{"a":1,"b":2}'

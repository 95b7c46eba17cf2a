"""The SDK's HTTP layer against a small server of the test's own: signatures that verify as the
services verify them, errors as exceptions, nothing listening, the SSE reader's edge cases (a
stream the server ends early, a frame above aiohttp's line limit, a finished job, a proxy that
answers 503 while the gateway restarts, heartbeats only), a log cut off in its last line, and
closing a session (twice; while another thread iterates a stream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from ai.backend.client import AsyncSession, ClientConfig, Session
from ai.backend.client.dto import LogLine
from ai.backend.client.exceptions import BackendAPIError, BackendClientError, ServerUnreachable
from ai.backend.client.func import jobs as jobs_module
from ai.backend.common.auth.hmac_signing import (
    SignatureError,
    parse_authorization,
    verify_signature,
)
from ai.backend.common.web import json_response, signed_parts
from ai.backend.testutils.services import free_port
from ai.backend.testutils.waiting import wait_until

ACCESS_KEY = "AKTEST"
SECRET_KEY = "test-secret"
AT = "2026-01-01T00:00:00Z"
BIG = "x" * 200_000  # above aiohttp's 128 KiB line limit


# what the scripted event streams answer, one item per connection (the last one repeats):
# an HTTP status, or the bytes to send before a clean end; ENDLESS: event 1, then heartbeats
# until the client goes away
ENDLESS = "endless"
Answer = int | bytes | str


@dataclass
class FakeServer:
    url: str
    raw_paths: list[str] = field(default_factory=list)
    last_event_ids: list[str | None] = field(default_factory=list)
    # job id → the answers of its event stream, its status, and the Last-Event-ID of each
    # connection
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    resumed_after: dict[str, list[str | None]] = field(default_factory=dict)


def frame(seq: int, kind: str, data: dict[str, Any]) -> bytes:
    body = {"kind": kind, "at": AT, **data}
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(body)}\n\n".encode()


def build_app(server: FakeServer) -> web.Application:
    @web.middleware
    async def check_signature(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        try:
            verify_signature(
                authorization=parse_authorization(request.headers.get("Authorization", "")),
                secret_key=SECRET_KEY,
                parts=signed_parts(request, body),
                now=datetime.now(UTC),
            )
        except SignatureError as e:
            return json_response({"error": str(e), "code": "invalid_signature"}, status=401)
        server.raw_paths.append(request.raw_path)
        return await handler(request)

    async def list_jobs(request: web.Request) -> web.Response:
        return json_response({"items": [], "next_cursor": None})

    async def apply_actor(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return json_response({"name": name, "generation": 1, "created": True, "changed": True})

    async def missing_actor(request: web.Request) -> web.Response:
        return json_response(
            {"error": "actor 'x' not found", "code": "actor_not_found"}, status=404
        )

    async def proxy_error(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    async def kserve_error(request: web.Request) -> web.Response:
        return json_response({"error": "unknown model 'm'"}, status=404)

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="hello", content_type="text/plain")

    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info.get("job_id", "j1")
        return json_response(
            {
                "id": job_id,
                "status": server.statuses.get(job_id, "succeeded"),
                "tool": None,
                "route": ["a"],
                "arguments": {},
                "created_at": AT,
                "updated_at": AT,
            }
        )

    async def events(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        server.last_event_ids.append(last)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if last is None:
            await response.write(b": heartbeat\n\n" + frame(1, "running", {}))
            await response.write(frame(2, "partial", {"data": 1}) + frame(3, "partial", {}))
            await response.write(b'id: 4\nevent: partial\ndata: {"cut')  # then a clean end
        elif last == "3":
            await response.write(frame(4, "partial", {"data": BIG}))
            await response.write(frame(5, "succeeded", {"result": 42}))
        await response.write_eof()
        return response

    async def scripted_events(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        connections = server.resumed_after.setdefault(job_id, [])
        connections.append(request.headers.get("Last-Event-ID"))
        script = server.scripts[job_id]
        answer = script[min(len(connections), len(script)) - 1]
        if isinstance(answer, int):
            return web.Response(status=answer, text="<html>Service Unavailable</html>")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if answer == ENDLESS:
            await response.write(frame(1, "running", {}))
            try:
                while True:  # until the client goes away (the write fails)
                    await response.write(b": heartbeat\n\n")
                    await asyncio.sleep(0.05)  # the pace of the heartbeats
            except ConnectionError:
                return response
        assert isinstance(answer, bytes)
        await response.write(answer)
        await response.write_eof()
        return response

    async def cut_log(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b'{"replica_id": "r1", "process": "runtime", "line": "one"}\n\n')
        line = {"replica_id": "r1", "process": "sidecar", "line": BIG}
        await response.write(json.dumps(line).encode() + b"\n")
        await response.write(b'{"replica_id": "r1", "process": "runt')  # then a clean end
        await response.write_eof()
        return response

    app = web.Application(middlewares=[check_signature])
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_put("/v1/actors/{name}", apply_actor)
    app.router.add_get("/v1/actors/x", missing_actor)
    app.router.add_get("/v1/agents", proxy_error)
    app.router.add_post("/v2/models/m/infer", kserve_error)
    app.router.add_get("/v1/tools", not_json)
    app.router.add_get("/v1/jobs/j1", get_job)
    app.router.add_get("/v1/jobs/j1/events", events)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_get("/v1/jobs/{job_id}/events", scripted_events)
    app.router.add_get("/v1/actors/cut/logs", cut_log)
    return app


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    port = free_port()
    server = FakeServer(f"http://127.0.0.1:{port}")
    runner = web.AppRunner(build_app(server))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server
    await runner.cleanup()


def config_for(url: str, secret_key: str = SECRET_KEY) -> ClientConfig:
    return ClientConfig(
        endpoint=url, gateway_endpoint=url, access_key=ACCESS_KEY, secret_key=secret_key
    )


async def test_signed_paths_and_queries_verify_as_sent(fake_server: FakeServer) -> None:
    async with AsyncSession(config_for(fake_server.url)) as session:
        page = await session.jobs.list(status="a b&c", cursor="x/y+z=")
        applied = await session.actors.apply({"name": "odd name/é", "handler": "m:f"})
    assert (page.items, page.next_cursor) == ([], None)
    assert applied.name == "odd name/é"
    assert fake_server.raw_paths == [
        "/v1/jobs?status=a+b%26c&cursor=x%2Fy%2Bz%3D",
        "/v1/actors/odd%20name%2F%C3%A9",
    ]
    async with AsyncSession(config_for(fake_server.url, "wrong")) as session:
        with pytest.raises(BackendAPIError) as refused:
            await session.jobs.list()
    assert str(refused.value) == "401 invalid_signature: signature mismatch"


async def test_error_answers_become_exceptions(fake_server: FakeServer) -> None:
    async with AsyncSession(config_for(fake_server.url)) as session:
        with pytest.raises(BackendAPIError) as not_found:
            await session.actors.get("x")
        with pytest.raises(BackendAPIError) as bad_gateway:
            await session.agents.list()
        with pytest.raises(BackendAPIError) as no_code:
            await session.models.infer("m", [])
        with pytest.raises(BackendClientError) as garbled:
            await session.tools.list()
    assert (not_found.value.status, not_found.value.code, not_found.value.message) == (
        404,
        "actor_not_found",
        "actor 'x' not found",
    )
    assert not_found.value.body == {"error": "actor 'x' not found", "code": "actor_not_found"}
    assert (bad_gateway.value.status, bad_gateway.value.code, bad_gateway.value.message) == (
        502,
        None,
        "<html>Bad Gateway</html>",
    )
    assert str(no_code.value) == "404: unknown model 'm'"
    assert str(garbled.value) == (
        f"the gateway at {fake_server.url} answered GET /v1/tools with a body that is not"
        " JSON: 'hello'"
    )


async def test_events_resume_after_an_early_end_and_read_long_frames(
    fake_server: FakeServer,
) -> None:
    async with AsyncSession(config_for(fake_server.url)) as session:
        events = [event async for event in session.jobs.events("j1")]
        after_the_end = [event async for event in session.jobs.events("j1", after=5)]
    assert [(e.seq, e.kind) for e in events] == [
        (1, "running"),
        (2, "partial"),
        (3, "partial"),
        (4, "partial"),
        (5, "succeeded"),
    ]
    assert events[3].data == {"kind": "partial", "at": AT, "data": BIG}
    assert events[4].at == datetime(2026, 1, 1, tzinfo=UTC)
    assert after_the_end == []
    assert fake_server.last_event_ids == [None, "3", "5"]


async def test_nothing_listening_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncSession(config_for(url)) as session:
        with pytest.raises(ServerUnreachable) as at_manager:
            await session.actors.list()
        with pytest.raises(ServerUnreachable) as at_gateway:
            await session.jobs.get("j1")
        with pytest.raises(ServerUnreachable) as streaming:
            await anext(session.jobs.events("j1"))
    for error in (at_manager.value, at_gateway.value):
        assert (error.url, error.reason) == (url, "connection refused")
    assert str(at_manager.value) == f"cannot reach {url}: connection refused"
    assert (streaming.value.url, streaming.value.reason) == (url, "connection refused")

    unknown_host = "http://no-such-host.invalid:8081"
    async with AsyncSession(config_for(unknown_host)) as session:
        with pytest.raises(ServerUnreachable) as unresolved:
            await session.agents.list()
    assert unresolved.value.reason == "cannot resolve host no-such-host.invalid"


def test_the_sync_session_raises_the_same_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Session(config_for(url)) as session:
        with pytest.raises(ServerUnreachable) as unreachable:
            session.agents.list()
    assert (unreachable.value.url, unreachable.value.reason) == (url, "connection refused")


@pytest.fixture
def quick_reconnects(monkeypatch: pytest.MonkeyPatch) -> int:
    """Reconnecting without the real backoff, giving up after 2 failures in a row."""
    monkeypatch.setattr(jobs_module, "RECONNECT_MIN", 0.01)
    monkeypatch.setattr(jobs_module, "RECONNECT_MAX", 0.02)
    monkeypatch.setattr(jobs_module, "MAX_RECONNECTS", 2)
    return 2


async def test_events_resume_after_a_503_on_reconnect(fake_server: FakeServer) -> None:
    """A rolling gateway restart behind a proxy: the stream ends early, the proxy answers 503
    to the first reconnect, the next one resumes."""
    fake_server.scripts["restart"] = [
        frame(1, "running", {}),
        503,
        frame(2, "partial", {"data": 1}) + frame(3, "succeeded", {"result": 2}),
    ]
    fake_server.scripts["down"] = [503]
    async with AsyncSession(config_for(fake_server.url)) as session:
        events = [event async for event in session.jobs.events("restart")]
        with pytest.raises(BackendAPIError) as at_once:
            await anext(session.jobs.events("down"))
    assert [(e.seq, e.kind) for e in events] == [(1, "running"), (2, "partial"), (3, "succeeded")]
    assert fake_server.resumed_after["restart"] == [None, "1", "1"]
    # never opened: a 503 is an answer like any other, not a dropped stream
    assert (at_once.value.status, at_once.value.message) == (
        503,
        "<html>Service Unavailable</html>",
    )
    assert fake_server.resumed_after["down"] == [None]


async def test_events_give_up_after_the_budget_of_failures(
    fake_server: FakeServer, quick_reconnects: int
) -> None:
    fake_server.scripts["gone"] = [frame(1, "running", {}), 503]
    fake_server.scripts["closing"] = [b""]
    fake_server.statuses["closing"] = "running"
    async with AsyncSession(config_for(fake_server.url)) as session:
        seen = []
        with pytest.raises(BackendAPIError) as gone:
            async for event in session.jobs.events("gone"):
                seen.append(event.seq)
        with pytest.raises(ServerUnreachable) as closing:
            await anext(session.jobs.events("closing"))
    assert seen == [1]
    assert gone.value.status == 503
    # the early end counts as the first failure; then two 503 answers
    assert fake_server.resumed_after["gone"] == [None, "1", "1"]
    assert str(closing.value) == (
        f"cannot reach {fake_server.url}: the event stream of job closing keeps closing"
    )
    assert fake_server.resumed_after["closing"] == [None] * (quick_reconnects + 1)


async def test_a_stream_that_delivered_heartbeats_resets_the_failures(
    fake_server: FakeServer, quick_reconnects: int
) -> None:
    """A proxy that closes idle streams of a running job: each connection brings heartbeats
    only, more times in a row than the budget of failures allows."""
    idle: list[Answer] = [b": heartbeat\n\n"] * (quick_reconnects + 2)
    fake_server.scripts["idle"] = [*idle, frame(1, "succeeded", {"result": 1})]
    fake_server.statuses["idle"] = "running"
    async with AsyncSession(config_for(fake_server.url)) as session:
        events = [event async for event in session.jobs.events("idle")]
    assert [(e.seq, e.kind) for e in events] == [(1, "succeeded")]
    assert fake_server.resumed_after["idle"] == [None] * (quick_reconnects + 3)


async def test_a_log_cut_off_in_its_last_line_ends_without_an_error(
    fake_server: FakeServer,
) -> None:
    async with AsyncSession(config_for(fake_server.url)) as session:
        lines = [line async for line in session.actors.logs("cut")]
    assert lines == [
        LogLine(replica_id="r1", process="runtime", line="one"),
        LogLine(replica_id="r1", process="sidecar", line=BIG),
    ]


async def test_a_closed_async_session_refuses_calls(fake_server: FakeServer) -> None:
    session = AsyncSession(config_for(fake_server.url))
    assert (await session.jobs.list()).items == []
    await session.close()
    await session.close()
    with pytest.raises(BackendClientError) as refused:
        await session.jobs.list()
    assert str(refused.value) == "session closed"


def test_closing_the_sync_session_twice_is_harmless() -> None:
    config = config_for(f"http://127.0.0.1:{free_port()}")
    session = Session(config)
    session.close()
    session.close()
    with pytest.raises(BackendClientError) as refused:
        session.jobs.get("j1")
    assert str(refused.value) == "session closed"
    with Session(config) as inside:
        inside.close()


async def test_closing_the_sync_session_ends_a_stream_another_thread_iterates(
    fake_server: FakeServer,
) -> None:
    fake_server.scripts["endless"] = [ENDLESS]
    session = Session(config_for(fake_server.url))
    seen: list[int] = []

    def iterate() -> BaseException | None:
        try:
            for event in session.jobs.events("endless"):
                seen.append(event.seq)
        except BackendClientError as e:
            return e
        return None

    reader = asyncio.ensure_future(asyncio.to_thread(iterate))
    await wait_until(lambda: seen == [1], what="the first event in the reading thread")
    await asyncio.to_thread(session.close)
    ended = await asyncio.wait_for(reader, timeout=10)
    assert isinstance(ended, BackendClientError) and str(ended) == "session closed"
    assert seen == [1]

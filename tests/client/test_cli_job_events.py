"""``backend.ai job events`` without ``--follow``, against a gateway of the test's own: a job
that has ended is printed to its terminal event however slowly the stream replays its history;
a running job up to its stored history, then until the stream is quiet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

import ai.backend.client.cli.job  # noqa: F401  (imported lazily by the entry point)
from ai.backend.cli.main import main
from ai.backend.client.cli import job as job_cli  # noqa: F401  (imported lazily by the entry point)
from ai.backend.common.dto.gateway_api import StoredJobEvent
from ai.backend.common.dto.job_event import JobEventKind
from ai.backend.common.web import json_response
from ai.backend.testutils.services import free_port

AT = "2026-01-01T00:00:00Z"
SLOW_PAGE = 0.8  # a page of history that takes longer than the quiet period (0.5 s)


def frame(seq: int, kind: str) -> bytes:
    return f'id: {seq}\nevent: {kind}\ndata: {{"kind": "{kind}", "at": "{AT}"}}\n\n'.encode()


def build_gateway() -> web.Application:
    statuses = {"ended": "succeeded", "running": "running"}

    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return json_response(
            {
                "id": job_id,
                "status": statuses[job_id],
                "tool": "t",
                "route": ["a"],
                "arguments": {},
                "created_at": AT,
                "updated_at": AT,
            }
        )

    async def events(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(frame(1, "running"))
        if job_id == "ended":
            await asyncio.sleep(SLOW_PAGE)  # the next page of history comes late
            await response.write(frame(2, "partial") + frame(3, "succeeded"))
            await response.write_eof()
            return response
        await response.write(frame(2, "partial"))
        try:
            while True:  # a running job: heartbeats until the client goes away
                await response.write(b": heartbeat\n\n")
                await asyncio.sleep(0.1)  # the pace of the heartbeats
        except ConnectionError:
            return response

    app = web.Application()
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_get("/v1/jobs/{job_id}/events", events)
    return app


@pytest.fixture
async def gateway_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of a CLI user whose gateway is the test's own."""
    port = free_port()
    runner = web.AppRunner(build_gateway())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield {
        "HOME": str(tmp_path),
        "BACKEND_CLIENT_CONFIG": str(tmp_path / "no-client.toml"),
        "BACKEND_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "BACKEND_GATEWAY_ENDPOINT": f"http://127.0.0.1:{port}",
        "BACKEND_ACCESS_KEY": "AKIATESTTESTTESTTEST",
        "BACKEND_SECRET_KEY": "secret",
        "BACKEND_DEBUG": "",
    }
    await runner.cleanup()


async def job_events(env: dict[str, str], *args: str) -> Result:
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["job", "events", *args], env=env, prog_name="backend.ai"
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


async def test_an_ended_job_is_printed_to_its_end_however_slow_its_history(
    gateway_env: dict[str, str],
) -> None:
    result = await job_events(gateway_env, "ended", "--json")
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["seq"], e["kind"]) for e in printed] == [
        (1, "running"),
        (2, "partial"),
        (3, "succeeded"),
    ]


async def test_a_running_job_is_printed_until_its_stream_is_quiet(
    gateway_env: dict[str, str],
) -> None:
    result = await job_events(gateway_env, "running", "--json")
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["seq"], e["kind"]) for e in printed] == [(1, "running"), (2, "partial")]
    assert result.stderr == ""


def stored(seq: int) -> StoredJobEvent:
    return StoredJobEvent(
        job_id="j", seq=seq, kind=JobEventKind.PARTIAL, data={}, at=datetime.now(UTC)
    )


async def slow_history(first: int) -> AsyncIterator[StoredJobEvent]:
    """Events ``first``…3 stored (one page each, each slower than the quiet period), event 4
    live right after them, event 5 after a long quiet."""
    for seq in range(first, 4):
        if seq > first:
            await asyncio.sleep(0.3)  # the next page of history comes late
        yield stored(seq)
    yield stored(4)
    await asyncio.sleep(5)  # a quiet running job
    yield stored(5)


@pytest.mark.parametrize(
    ("after", "history_end", "printed"),
    [
        (None, 3, [1, 2, 3, 4]),  # the whole history, then what comes before the quiet
        (1, 3, [2, 3, 4]),  # `--after 1`: the rest of the history
        (3, 3, [4]),  # `--after` the history: only the quiet counts
        (None, 0, [1]),  # nothing stored yet: only the quiet counts
        (None, None, [1]),  # a gateway that does not say where its history ends
    ],
)
async def test_the_quiet_period_starts_after_the_history(
    monkeypatch: pytest.MonkeyPatch, after: int | None, history_end: int | None, printed: list[int]
) -> None:
    monkeypatch.setattr(job_cli, "HISTORY_QUIET_SECONDS", 0.1)
    source = slow_history((after or 0) + 1)
    shown = [
        event.seq async for event in job_cli._so_far(source, after=after, history_end=history_end)
    ]
    assert shown == printed

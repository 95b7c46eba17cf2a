"""``jobs.events`` resumes after a dropped connection: a real gateway streams a job's events
through a TCP proxy that cuts the first connection in the middle of a frame; the SDK reconnects
with ``Last-Event-ID`` and the events it yields have no gap and no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import examples.streaming  # noqa: F401  (the replica's handler: Pants packs it with this)
import pytest

from ai.backend.client import AsyncSession, ClientConfig
from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import deploy

WORDS = [f"word{i}" for i in range(40)]
FRAME_START = b"id: "


class CuttingProxy:
    """Forwards TCP connections to ``target_port``; the first one is cut (both ways, abruptly)
    in the middle of the ``cut_in_frame``-th SSE frame of its answer, after the frames before
    it went through whole."""

    def __init__(self, target_port: int, *, cut_in_frame: int) -> None:
        self.target_port = target_port
        self.cut_in_frame = cut_in_frame
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and end the connections still open (pooled by a client)."""
        if self._server is not None:
            self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        cut = self.connections == 1
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        requests = asyncio.create_task(self._copy(reader, upstream_writer))
        try:
            if cut:
                await self._copy_until_cut(upstream_reader, writer)
                for side in (writer, upstream_writer):
                    side.transport.abort()
                self.cuts += 1
            else:
                await self._copy(upstream_reader, writer)
        finally:
            requests.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await requests
            for side in (writer, upstream_writer):
                side.close()

    @staticmethod
    async def _copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                target.write(data)
                await target.drain()

    async def _copy_until_cut(
        self, source: asyncio.StreamReader, target: asyncio.StreamWriter
    ) -> None:
        answer = bytearray()
        while data := await source.read(65536):
            answer += data
            starts = [i for i in range(len(answer)) if answer.startswith(FRAME_START, i)]
            if len(starts) >= self.cut_in_frame:
                target.write(bytes(answer[: starts[self.cut_in_frame - 1] + 20]))
                await target.drain()
                return
        raise AssertionError(f"the stream ended before frame {self.cut_in_frame}")


@pytest.mark.timeout(180)
async def test_events_resume_without_gaps_or_duplicates_after_a_cut(
    cluster: Cluster, platform_config: ClientConfig
) -> None:
    await deploy(cluster, "tokenizer", "examples.streaming:tokens", execution="inprocess")
    proxy = CuttingProxy(urlsplit(platform_config.gateway_endpoint).port or 0, cut_in_frame=6)
    proxy_port = await proxy.start()
    through_proxy = platform_config.model_copy(
        update={"gateway_endpoint": f"http://127.0.0.1:{proxy_port}"}
    )
    try:
        async with AsyncSession(platform_config) as direct, AsyncSession(through_proxy) as cut:
            job = await direct.jobs.submit(route=["tokenizer"], arguments={"text": " ".join(WORDS)})
            resumed = [event async for event in cut.jobs.events(job.id)]
            history = [event async for event in direct.jobs.events(job.id)]
            tail = [event async for event in direct.jobs.events(job.id, after=len(history) - 2)]
            finished = await direct.jobs.wait(job.id, timeout=10)
    finally:
        await proxy.stop()
    assert (proxy.cuts, proxy.connections) == (1, 2)
    assert [e.seq for e in resumed] == list(range(1, len(resumed) + 1))
    assert resumed == history
    assert [e.data.get("data") for e in resumed if e.kind == "partial"] == [
        {"token": word} for word in WORDS
    ]
    assert resumed[-1].kind == "succeeded"
    assert resumed[-1].data["result"] == {"text": " ".join(WORDS), "tokens": len(WORDS)}
    assert tail == history[-2:]
    assert (finished.status, finished.result) == ("succeeded", resumed[-1].data["result"])

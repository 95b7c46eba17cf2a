"""The inference service and its model registry with stand-ins for the manager (and for Redis,
or the real one): how a request becomes an envelope, how replies find their request, timeouts
and unknown models, a reply stream per run of the process, and Redis away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ai.backend.common.dto.envelope_wire import WireEnvelope, decode_envelope
from ai.backend.common.dto.manager_api import ModelInfo
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.gateway.clients.reply_stream import ReplyEntry
from ai.backend.gateway.config import GatewayConfig
from ai.backend.gateway.errors import InferenceFailed, ModelNotFound, Unavailable, UpstreamTimeout
from ai.backend.gateway.services.inference import InferenceService
from ai.backend.gateway.services.model_registry import ModelRegistry
from ai.backend.testutils.services import free_port
from ai.backend.testutils.waiting import wait_until

REQUEST = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}


class FakeManager:
    def __init__(self, models: list[ModelInfo]) -> None:
        self.models = models
        self.reads = 0

    async def list_models(self) -> list[ModelInfo]:
        self.reads += 1
        return list(self.models)

    async def close(self) -> None:
        pass


class FakeRedis:
    """Publishes envelopes into a list and answers reads from a queue of replies."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.deleted = 0
        self.some_published = asyncio.Event()
        self._count = 0

    async def publish(self, envelopes: list[tuple[str, bytes]]) -> None:
        self.published += envelopes
        self.some_published.set()

    async def read(
        self, after: str, *, block: float, count: int, trim_read: bool = True
    ) -> list[ReplyEntry]:
        body = await self.replies.get()
        self._count += 1
        return [ReplyEntry(f"1-{self._count}", body)]

    async def delete(self) -> None:
        self.deleted += 1

    def answer(self, job_id: str, **event: Any) -> None:
        self.replies.put_nowait(orjson.dumps({"job_id": job_id, **event}))


def model(name: str, version: str, actor: str = "echo-actor") -> ModelInfo:
    return ModelInfo(name=name, version=version, actor_name=actor, metadata={})


@pytest.fixture
def manager() -> FakeManager:
    return FakeManager([model("echo", "1"), model("echo", "10"), model("echo", "9")])


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
async def service(manager: FakeManager, redis: FakeRedis) -> AsyncIterator[InferenceService]:
    inference = InferenceService(
        config=GatewayConfig(),
        # no Redis: publisher and replies are the fake
        redis=None,  # type: ignore[arg-type]
        keys=RedisKeys(),
        gateway_id="gw-1",
        registry=ModelRegistry(source=manager, refresh_interval=3600, miss_interval=0),
        publisher=redis,
        replies=redis,
        timeout=5,
    )
    await inference.start()
    yield inference
    await inference.stop()


async def published_envelope_id(redis: FakeRedis) -> str:
    await redis.some_published.wait()
    return decode_envelope(redis.published[-1][1]).id


async def test_a_request_travels_as_an_untracked_envelope_to_the_latest_version(
    service: InferenceService, redis: FakeRedis
) -> None:
    call = asyncio.create_task(service.infer("echo", None, REQUEST))
    envelope_id = await published_envelope_id(redis)
    actor, body = redis.published[0]
    envelope = decode_envelope(body)
    assert actor == "echo-actor"
    assert envelope.route.actors == ["echo-actor"]
    assert envelope.headers == {"reply-to": service.reply_address, "events": "off"}
    assert service.reply_address.startswith("gw-1.")
    assert envelope.model is not None
    assert (envelope.model.name, envelope.model.version) == ("echo", "10")
    assert envelope.payload == REQUEST and envelope.deadline_at is not None
    redis.answer("someone-else", kind="succeeded", result={})  # not ours: ignored
    redis.answer(envelope_id, kind="succeeded", result={"outputs": []})
    redis.answer(envelope_id, kind="succeeded", result={"outputs": ["duplicate"]})
    result = await call
    assert (result.model.version, result.request_id, result.result) == (
        "10",
        envelope_id,
        {"outputs": []},
    )


async def test_a_failed_model_call_says_why_without_a_traceback(
    service: InferenceService, redis: FakeRedis
) -> None:
    call = asyncio.create_task(service.infer("echo", "1", REQUEST))
    error = {"code": "processing_error", "type": "KeyError", "message": "'y'", "traceback": "..."}
    redis.answer(await published_envelope_id(redis), kind="failed", error=error)
    with pytest.raises(InferenceFailed) as caught:
        await call
    assert caught.value.message == "model echo version 1: KeyError: 'y'"


async def test_no_answer_in_time_is_an_upstream_timeout(service: InferenceService) -> None:
    with pytest.raises(UpstreamTimeout, match="did not answer within 0.05 s"):
        await service.infer("echo", None, REQUEST, timeout=0.05)


async def test_a_publish_that_times_out_is_unavailable_not_a_model_timeout(
    service: InferenceService, redis: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def timed_out(envelopes: list[tuple[str, bytes]]) -> None:
        raise TimeoutError("timed out")  # as a socket to Redis says it

    monkeypatch.setattr(redis, "publish", timed_out)
    with pytest.raises(Unavailable, match="^the data plane is unavailable: timed out$"):
        await service.infer("echo", None, REQUEST, timeout=5)


async def test_an_unknown_model_is_looked_up_again_before_it_is_not_found(
    service: InferenceService, manager: FakeManager
) -> None:
    reads = manager.reads
    with pytest.raises(ModelNotFound, match="^model nope is not registered$"):
        await service.model("nope")
    with pytest.raises(ModelNotFound, match="^model echo version 2 is not registered$"):
        await service.model("echo", "2")
    assert manager.reads == reads + 2
    manager.models.append(model("late", "1"))
    assert (await service.model("late")).actor == "echo-actor"


async def test_misses_read_the_registry_at_most_once_per_interval(manager: FakeManager) -> None:
    registry = ModelRegistry(source=manager, refresh_interval=3600, miss_interval=3600)
    await registry.start()
    try:
        for _ in range(5):
            with pytest.raises(ModelNotFound):
                await registry.find("nope")
        assert manager.reads == 1
        assert [m.version for m in registry.versions("echo")] == ["10", "9", "1"]
    finally:
        await registry.stop()


def redis_service(
    manager: FakeManager, redis: Redis, keys: RedisKeys, replies: FakeRedis | None = None
) -> InferenceService:
    """A service of gateway ``gw-1`` on a real Redis (``replies``: a stand-in reader)."""
    return InferenceService(
        config=GatewayConfig(),
        redis=redis,
        keys=keys,
        gateway_id="gw-1",
        registry=ModelRegistry(source=manager, refresh_interval=3600, miss_interval=0),
        replies=replies,
        timeout=10,
    )


async def published_envelopes(redis: Redis, keys: RedisKeys, count: int) -> list[WireEnvelope]:
    """The first ``count`` envelopes on ``echo-actor``'s stream (waiting for them)."""

    async def published() -> list[WireEnvelope] | None:
        entries: Any = await redis.xrange(keys.actor_stream("echo-actor"))
        found = [decode_envelope(fields[b"e"]) for _id, fields in entries]
        return found if len(found) >= count else None

    envelopes: list[WireEnvelope] = await wait_until(published, what=f"{count} envelopes")
    return envelopes


async def test_each_run_of_a_gateway_id_reads_a_reply_stream_of_its_own(
    manager: FakeManager, redis_client: Redis, key_prefix: str
) -> None:
    """A restart overlaps the old and the new process of one gateway id: neither deletes (or
    reads, or trims) the other's replies."""
    keys = RedisKeys(key_prefix)
    old = redis_service(manager, redis_client, keys)
    new = redis_service(manager, redis_client, keys)
    await old.start()
    try:
        call = asyncio.create_task(old.infer("echo", None, REQUEST))
        [envelope] = await published_envelopes(redis_client, keys, 1)
        address = envelope.headers["reply-to"]
        assert address == old.reply_address and address.startswith("gw-1.")
        assert new.reply_address.startswith("gw-1.") and new.reply_address != address
        await new.start()  # the new process starts while the old one still waits ...
        other = asyncio.create_task(new.infer("echo", None, REQUEST))
        await published_envelopes(redis_client, keys, 2)
        await new.stop()  # ... and stops again (a failed rollout) before the answer comes
        with pytest.raises(Unavailable):
            await other
        assert not await redis_client.exists(keys.reply(new.reply_address))
        reply = {"job_id": envelope.id, "kind": "succeeded", "result": {"outputs": []}}
        await redis_client.xadd(keys.reply(address), {"ev": orjson.dumps(reply)})
        assert (await call).result == {"outputs": []}
    finally:
        await old.stop()
    assert not await redis_client.exists(keys.reply(address))


async def test_redis_away_is_unavailable_not_an_internal_error(
    manager: FakeManager, key_prefix: str
) -> None:
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    service = redis_service(manager, nowhere, RedisKeys(key_prefix), replies=FakeRedis())
    await service.start()
    try:
        with pytest.raises(Unavailable, match="^the data plane is unavailable: "):
            await service.infer("echo", None, REQUEST)
    finally:
        await service.stop()
        await nowhere.aclose()

"""KServe v2 inference as request-reply through a model's actor (DESIGN.md §5, §5a).

A request becomes one envelope on the model's actor stream, with ``model`` naming the model and
the headers ``reply-to: <reply address>`` (its outcome comes back on this process's reply
stream) and ``events: off`` (no job events: inference is no job of record). The reply address
is ``<gateway id>.<random>``, new for every run of the process: an old and a new process of one
gateway id overlap during a restart, and neither may read, trim or delete the other's replies.
The sidecar of the actor answers in the commit that acknowledges the envelope; one task reads
the reply stream and resolves the waiting request by its envelope id. No database on this path:
the model registry is cached (:class:`~.model_registry.ModelRegistry`), and envelopes published
in the same loop turn go out in one Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from ai.backend.common import json as wire_json
from ai.backend.common.aio import MicroBatcher, cancel_and_wait
from ai.backend.common.dto.envelope import EVENTS_HEADER, EVENTS_OFF, REPLY_TO_HEADER
from ai.backend.common.dto.envelope_wire import WireEnvelope, WireModelRef, WireRoute
from ai.backend.common.errors import BackendError
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import RedisStreamsTransport

from ..clients.data_plane import DataPlaneClient
from ..clients.manager import ManagerClient
from ..clients.reply_stream import START, ReplyEntry, ReplyStreamClient
from ..config import GatewayConfig
from ..errors import InferenceFailed, InvalidArgument, Unavailable, UpstreamTimeout
from .model_registry import ModelRegistry, ModelVersion

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

DEFAULT_TIMEOUT: Final = 60.0
REPLY_BLOCK: Final = 1.0
REPLY_BATCH: Final = 512
RETRY_PAUSE: Final = 0.5
SERVER_NAME: Final = "backend.ai-actors"
EXTENSIONS: Final = ("binary_tensor_data", "model_repository")
# exceptions of a model that say its input was wrong (answered 400, not 500)
INPUT_ERRORS: Final = frozenset({"InvalidInferRequest", "InvalidInput", "InvalidArgument"})
# the data plane is away (redis-py's errors are no builtin ConnectionError / TimeoutError)
UNAVAILABLE_ERRORS: Final = (
    OSError,  # ConnectionError among them
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)


def reply_address(gateway_id: str) -> str:
    """The reply address of one run of a gateway process (``reply-to``, ``bai:reply:{it}``)."""
    return f"{gateway_id}.{secrets.token_hex(4)}"


class EnvelopePublisher(Protocol):
    async def publish(self, envelopes: list[tuple[str, bytes]]) -> None:
        """Append each ``(actor, envelope JSON)`` to its actor's stream in one round trip."""


class ReplyReader(Protocol):
    async def read(
        self, after: str, *, block: float, count: int, trim_read: bool = True
    ) -> list[ReplyEntry]: ...

    async def delete(self) -> None: ...


@dataclass(frozen=True)
class InferenceResult:
    """The model's answer (a dict of the v2 response shape) and who gave it."""

    model: ModelVersion
    request_id: str  # the envelope's id: the response's ``id`` when the request had none
    result: Any


class InferenceService:
    """Built from the gateway's configuration and Redis client; ``registry``, ``publisher``
    and ``replies`` replace the clients it would make (tests)."""

    def __init__(
        self,
        *,
        config: GatewayConfig,
        redis: Redis,
        keys: RedisKeys,
        gateway_id: str,
        registry: ModelRegistry | None = None,
        publisher: EnvelopePublisher | None = None,
        replies: ReplyReader | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.gateway_id = gateway_id
        self.reply_address = reply_address(gateway_id)
        self.timeout = timeout
        if registry is None:
            manager = config.manager
            source = ManagerClient(
                api=manager.api, access_key=manager.access_key, secret_key=manager.secret_key
            )
            registry = ModelRegistry(source=source)
        self.registry = registry
        self._publisher = publisher or DataPlaneClient(
            RedisStreamsTransport(redis, prefix=keys.prefix)
        )
        self._replies = replies or ReplyStreamClient(redis, keys, self.reply_address)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._batcher: MicroBatcher[tuple[str, bytes], None] = MicroBatcher(self._publish)
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the registry and start reading replies (on this run's own stream: a previous
        run's stream, which may still be in use while it stops, is left to it)."""
        await self.registry.start()
        self._reader = asyncio.create_task(self._read_replies(), name="inference-replies")

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._reader)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(Unavailable("the gateway is stopping"))
        self._waiting.clear()
        await self.registry.stop()
        try:
            await self._replies.delete()  # this run's own stream: nobody else reads it
        except Exception as e:  # Redis away: the stream expires on its own
            log.warning("could not delete the reply stream: {}", e)

    # --- registry -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The registry has been read and replies are being read."""
        return self.registry.loaded and self._reader is not None and not self._reader.done()

    async def model(self, name: str, version: str | None = None) -> ModelVersion:
        """``ModelNotFound`` for a model (or version) that is not registered."""
        return await self.registry.find(name, version)

    def models(self) -> list[ModelVersion]:
        return self.registry.models()

    # --- inference ----------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> InferenceResult:
        """Run ``payload`` (a v2 request, see ``kserve_codec``) through the model's actor and
        return its answer: ``ModelNotFound`` (404), ``UpstreamTimeout`` (504) when no answer
        comes within ``timeout`` seconds, ``InferenceFailed`` (500) or ``InvalidArgument`` (400)
        when the model failed."""
        model = await self.registry.find(name, version)
        wait = self.timeout if timeout is None else timeout
        envelope = WireEnvelope(
            route=WireRoute([model.actor], 0),
            payload=payload,
            headers={REPLY_TO_HEADER: self.reply_address, EVENTS_HEADER: EVENTS_OFF},
            deadline_at=datetime.now(UTC) + timedelta(seconds=wait),
            model=WireModelRef(model.name, model.version),
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[envelope.id] = future
        # one timer on the reply's future (cheaper than a wait_for per request)
        expiry = loop.call_later(wait, _expire, future)
        try:
            await self._batcher.submit((model.actor, envelope.to_json_bytes()))
            reply = await future
        except _NoReply:
            raise UpstreamTimeout(
                f"model {model.name} version {model.version} did not answer within {wait:g} s"
            ) from None
        except UNAVAILABLE_ERRORS as e:
            raise Unavailable(f"the data plane is unavailable: {e}") from None
        finally:
            expiry.cancel()
            self._waiting.pop(envelope.id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a timeout that came while publishing failed
        if reply.get("kind") == "succeeded":
            return InferenceResult(model, envelope.id, reply.get("result"))
        raise _failure(model, reply.get("error") or {})

    async def _publish(self, envelopes: list[tuple[str, bytes]]) -> list[None]:
        await self._publisher.publish(envelopes)
        return [None] * len(envelopes)

    async def _read_replies(self) -> None:
        after = START
        task = asyncio.current_task()
        while not self._stopping:
            if task is not None and task.cancelling():
                # redis-py (8.1) can swallow a cancel that lands while it checks a pooled
                # connection: the read then returns (or fails) as if nothing happened
                raise asyncio.CancelledError
            try:
                entries = await self._replies.read(after, block=REPLY_BLOCK, count=REPLY_BATCH)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("reading the reply stream failed ({}); retrying", e)
                await asyncio.sleep(RETRY_PAUSE)  # a backoff, not a synchronisation
                continue
            for entry in entries:
                after = entry.entry_id
                self._resolve(entry.body)

    def _resolve(self, body: bytes) -> None:
        try:
            reply = wire_json.loads(body)
            future = self._waiting.get(reply["job_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed reply ({} bytes)", len(body))
            return
        if future is not None and not future.done():  # else a duplicate, or too late
            future.set_result(reply)


class _NoReply(Exception):
    """No reply came in time (apart from TimeoutError, which the data plane's sockets raise:
    that one means Redis is unavailable)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_NoReply())


def _failure(model: ModelVersion, error: dict[str, Any]) -> BackendError:
    message = str(error.get("message") or "the model failed")
    kind = error.get("type")
    where = f"model {model.name} version {model.version}"
    if error.get("code") == "timeout":
        return UpstreamTimeout(f"{where}: {message}")
    if kind in INPUT_ERRORS:
        return InvalidArgument(f"{where}: {message}")
    return InferenceFailed(f"{where}: {kind}: {message}" if kind else f"{where}: {message}")

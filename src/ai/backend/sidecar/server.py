"""Assemble and run one sidecar: an actor's (with its runtime) or a crew member's."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from ai.backend.common.aio import new_runner
from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.base import RESERVED_ACTOR_NAMES
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_streams import RedisStreamsTransport

from .clients.runtime import RuntimeClient, RuntimeHello
from .config import SidecarConfig
from .metrics import SidecarMetrics
from .services.cancellation import CancelledJobs
from .services.consumer import ConsumerLoop, ConsumerSettings
from .services.crew import CrewMember
from .services.events import EventPublisher
from .services.processor import ActorProcessor

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


@dataclass(frozen=True)
class SidecarOptions:
    actor: str
    socket_path: Path | None
    consumer: str | None = None
    concurrency: int | None = None  # default: the spec's, else the runtime's hello


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def run_sidecar(config: SidecarConfig, options: SidecarOptions, stop: asyncio.Event) -> None:
    redis = Redis.from_url(config.redis.url, decode_responses=False)
    transport = RedisStreamsTransport(redis, prefix=config.redis.prefix)
    metrics = SidecarMetrics(options.actor)
    if config.sidecar.metrics_port is not None:
        metrics.serve(config.sidecar.metrics_port)
    events = EventPublisher(transport)
    events.start()
    cancelled = CancelledJobs(redis, transport.keys.cancel)
    await cancelled.start()
    runtime: RuntimeClient | None = None
    try:
        if options.actor in RESERVED_ACTOR_NAMES:
            crew = CrewMember(options.actor, redis, transport.keys)
            handler = crew.handle
            concurrency = options.concurrency or 64
        else:
            if options.socket_path is None:
                raise ValueError(f"actor {options.actor} needs --socket (its runtime)")
            runtime = RuntimeClient(options.socket_path, max_frame=config.sidecar.max_frame)
            runtime.start()
            hello = await _first_hello(runtime, stop)
            if hello is None:
                return
            spec = config.actor or ActorSpec(
                name=options.actor, handler=hello.handler, concurrency=hello.concurrency
            )
            if spec.name != options.actor:
                raise ValueError(f"the config's [actor] is {spec.name!r}, not {options.actor!r}")
            concurrency = options.concurrency or spec.concurrency
            processor = ActorProcessor(spec, runtime, events, metrics)
            handler = processor.handle
        settings = ConsumerSettings(
            queue=options.actor,
            consumer=options.consumer or default_consumer_name(),
            concurrency=concurrency,
            claim_idle=config.sidecar.claim_idle.total_seconds(),
            shutdown_grace=config.sidecar.shutdown_grace.total_seconds(),
        )
        log.info(
            "sidecar of {} consuming as {} ({} in flight)",
            options.actor,
            settings.consumer,
            concurrency,
        )
        await ConsumerLoop(transport, settings, handler, metrics, cancelled).run(stop)
    finally:
        if runtime is not None:
            await runtime.close()
        await cancelled.close()
        await events.close()
        await redis.aclose()


async def _first_hello(runtime: RuntimeClient, stop: asyncio.Event) -> RuntimeHello | None:
    """The runtime's hello, or ``None`` if the sidecar is stopped before the runtime answers."""
    waiter = asyncio.ensure_future(runtime.wait_connected())
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    return None


async def serve_until_signalled(config: SidecarConfig, options: SidecarOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_sidecar(config, options, stop)


def run(config: SidecarConfig, options: SidecarOptions) -> None:
    with new_runner() as runner:
        runner.run(serve_until_signalled(config, options))

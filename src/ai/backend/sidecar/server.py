"""Assemble and run one sidecar: an actor's (with its runtime) or a crew member's."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from ai.backend.common.aio import Stopped, new_runner, tune_gc, unless_stopped
from ai.backend.common.dto.actor_spec import ActorSpec, ExecutionMode, RetryPolicy
from ai.backend.common.dto.base import RESERVED_ACTOR_NAMES
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_connection import redis_client
from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.runtime.calls import hello_frame
from ai.backend.runtime.loader import LoadedHandler, load_handler

from .clients.inprocess import InProcessRuntime
from .clients.runtime import ActorRuntime, RuntimeClient
from .config import SidecarConfig
from .metrics import SidecarMetrics
from .services.cancellation import CancelledJobs
from .services.consumer import ConsumerLoop, ConsumerSettings, EnvelopeHandler
from .services.crew import CrewMember
from .services.events import EventPublisher
from .services.processor import ActorProcessor
from .services.retrying import RedisRetrier
from .services.status_file import StatusFile

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

CREW_CONCURRENCY = 64


@dataclass(frozen=True)
class SidecarOptions:
    actor: str
    socket_path: Path | None
    consumer: str | None = None
    concurrency: int | None = None  # default: the spec's, else the runtime's hello
    handler: LoadedHandler | None = None  # execution: inprocess, loaded already (else here)
    status_file: Path | None = None  # written once serving (for the agent)


def is_inprocess(config: SidecarConfig) -> bool:
    return config.actor is not None and config.actor.execution is ExecutionMode.INPROCESS


def actor_runtime(
    config: SidecarConfig,
    options: SidecarOptions,
    metrics: SidecarMetrics,
    status: StatusFile | None = None,
) -> ActorRuntime:
    """The actor's handler: inside this process (``execution: inprocess``; raises
    ``HandlerLoadError`` when it cannot be loaded), else its runtime at ``--socket``."""
    spec = config.actor
    if spec is not None and spec.execution is ExecutionMode.INPROCESS:
        inprocess = InProcessRuntime(
            options.handler or load_handler(spec.handler, spec.pythonpath),
            concurrency=options.concurrency or spec.concurrency,
            max_frame=config.sidecar.max_frame,
        )
        if status is not None:
            status.hello(hello_frame(inprocess.handler, inprocess.concurrency))
        return inprocess
    if options.socket_path is None:
        raise ValueError(f"actor {options.actor} needs --socket (its runtime)")
    return RuntimeClient(
        options.socket_path,
        max_frame=config.sidecar.max_frame,
        on_error=metrics.count_error,
        on_hello=status.hello if status is not None else None,
    )


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def run_sidecar(config: SidecarConfig, options: SidecarOptions, stop: asyncio.Event) -> None:
    redis = redis_client(config.redis.url)
    transport = RedisStreamsTransport(
        redis, prefix=config.redis.prefix, job_end_ttl=config.redis.job_end_ttl.total_seconds()
    )
    metrics = SidecarMetrics(options.actor)
    if config.sidecar.metrics_port is not None:
        metrics.serve(config.sidecar.metrics_port)
    events = EventPublisher(transport, metrics)
    events.start()
    cancelled = CancelledJobs(transport, metrics)
    await cancelled.start()
    retrier = RedisRetrier(transport, metrics)
    runtime: ActorRuntime | None = None
    is_crew = options.actor in RESERVED_ACTOR_NAMES
    status = None
    if options.status_file is not None:
        status = StatusFile(options.status_file, needs_hello=not is_crew)
    try:
        handler: EnvelopeHandler
        if is_crew:
            handler = CrewMember(options.actor, transport, retrier)
            concurrency = options.concurrency or CREW_CONCURRENCY
            max_deliveries = RetryPolicy().max_deliveries
        else:
            runtime = actor_runtime(config, options, metrics, status)
            runtime.start()
            try:
                hello = await unless_stopped(runtime.wait_connected(), stop)
            except Stopped:
                return
            spec = config.actor or ActorSpec(
                name=options.actor, handler=hello.handler, concurrency=hello.concurrency
            )
            if spec.name != options.actor:
                raise ValueError(f"the config's [actor] is {spec.name!r}, not {options.actor!r}")
            concurrency = options.concurrency or spec.concurrency
            max_deliveries = spec.retry.max_deliveries
            handler = ActorProcessor(
                spec, runtime, events, metrics, transport=transport, retrier=retrier
            )
        settings = ConsumerSettings(
            queue=options.actor,
            consumer=options.consumer or default_consumer_name(),
            concurrency=concurrency,
            claim_idle=config.sidecar.claim_idle.total_seconds(),
            shutdown_grace=config.sidecar.shutdown_grace.total_seconds(),
            max_deliveries=max_deliveries,
        )
        log.info(
            "sidecar of {} consuming as {} ({} in flight)",
            options.actor,
            settings.consumer,
            concurrency,
        )
        loop = ConsumerLoop(
            transport,
            settings,
            handler,
            metrics,
            cancelled=cancelled,
            gate=runtime,
            retrier=retrier,
            events=events if runtime is not None else None,
            on_registered=status.registered if status is not None else None,
        )
        await loop.run(stop)
    finally:
        if runtime is not None:
            await runtime.close()
        await cancelled.close()
        await events.close()
        await redis.aclose()


async def serve_until_signalled(config: SidecarConfig, options: SidecarOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_sidecar(config, options, stop)


def run(config: SidecarConfig, options: SidecarOptions) -> None:
    tune_gc()
    with new_runner() as runner:
        runner.run(serve_until_signalled(config, options))

"""Assemble the gateway: database and Redis clients → repositories → services → REST, MCP and
KServe handlers, plus the background work every replica shares (``./backend.ai gw
start-server``): applying job events, sweeping deadlines and unconfirmed publishes, following
other replicas' stored events, KServe replies, and the tools reloaded on ``SIGHUP``."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from ai.backend.common import __version__
from ai.backend.common.aio import cancel_and_wait, new_runner
from ai.backend.common.db.engine import create_engine_from_config
from ai.backend.common.db.leader import EVENTS_LOCK_KEY, LeaderElection
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.common.web import BODY_LIMIT_KEY, error_middleware, serve_until_stopped

from .api.context import CONTEXT_KEY, GatewayContext
from .api.health import add_health_routes
from .api.jobs import add_job_routes
from .api.kserve import add_kserve_routes
from .api.mcp import MCP_STATE_KEY, add_mcp_routes, mcp_origin_middleware
from .api.middlewares import auth_middleware
from .api.openapi import add_openapi_route
from .clients.data_plane import DataPlaneClient
from .clients.events_stream import EventsStreamClient
from .config import GatewayConfig
from .metrics import GatewayMetrics
from .repositories.credentials import CredentialRepository
from .repositories.job_events import JobEventRepository
from .repositories.jobs import JobRepository
from .services.auth import AuthService
from .services.event_ingestor import EventIngestor
from .services.inference import InferenceService
from .services.job_event_hub import JobEventHub
from .services.job_sweeper import JobSweeper
from .services.jobs import JobService
from .services.mcp_sessions import McpSessionService
from .services.tools import ToolService

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

PROBE_TIMEOUT = 2.0


def default_gateway_id(port: int) -> str:
    """Stable across restarts on one host, distinct for gateways on other ports."""
    host = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return f"{host[:50] or 'gateway'}-{port}"


async def _background(
    app: web.Application, config: GatewayConfig, tools: ToolService
) -> AsyncIterator[None]:
    engine = create_engine_from_config(config.db)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    transport = RedisStreamsTransport.from_url(
        config.redis.url,
        prefix=config.redis.prefix,
        job_end_ttl=config.redis.job_end_ttl.total_seconds(),
    )
    gateway_id = config.jobs.gateway_id or default_gateway_id(config.api.port)
    metrics = GatewayMetrics()
    stream = EventsStreamClient(transport.redis, transport.keys, gateway_id)
    hub = JobEventHub(gateway_id)
    job_repo = JobRepository(sessions)
    event_repo = JobEventRepository(sessions, max_partials=config.jobs.max_partials)
    applier = LeaderElection(
        config.db.url, retry_interval=1.0, lock_key=EVENTS_LOCK_KEY, role="job-event applier"
    )
    ingestor = EventIngestor(
        stream=stream,
        events=event_repo,
        hub=hub,
        metrics=metrics,
        leader=applier,
        batch=config.jobs.events_batch,
        trim_interval=config.jobs.trim_interval.total_seconds(),
    )
    data_plane = DataPlaneClient(transport)
    jobs = JobService(
        jobs=job_repo,
        events=event_repo,
        tools=tools,
        data_plane=data_plane,
        hub=hub,
        ingestor=ingestor,
        metrics=metrics,
    )
    sweeper = JobSweeper(
        jobs=job_repo,
        data_plane=data_plane,
        ingestor=ingestor,
        metrics=metrics,
        interval=config.jobs.sweep_interval.total_seconds(),
        publish_retry_after=config.jobs.publish_retry_after.total_seconds(),
    )
    inference = InferenceService(
        config=config, redis=transport.redis, keys=transport.keys, gateway_id=gateway_id
    )

    async def probe() -> dict[str, bool]:
        async def database() -> bool:
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            return True

        results: dict[str, bool] = {}
        for name, check in (("postgresql", database), ("redis", transport.redis.ping)):
            try:
                results[name] = bool(await asyncio.wait_for(check(), PROBE_TIMEOUT))
            except Exception:
                results[name] = False
        return results

    async def refresh_metrics() -> None:
        try:
            metrics.set_jobs(await job_repo.count_by_status())
            lag = await stream.lag()
            if lag is not None:
                metrics.event_lag.set(lag)
        except Exception:
            log.warning("metrics refresh failed", exc_info=True)

    app[CONTEXT_KEY] = GatewayContext(
        config=config,
        gateway_id=gateway_id,
        auth=AuthService(CredentialRepository(sessions), config.auth),
        tools=tools,
        jobs=jobs,
        inference=inference,
        registry=metrics.registry,
        version=__version__,
        probe=probe,
        refresh_metrics=refresh_metrics,
        is_applier=lambda: applier.is_leader,
    )
    app[MCP_STATE_KEY].sessions = McpSessionService(transport.redis, prefix=config.redis.prefix)
    await stream.ensure_group()
    await applier.start()
    await inference.start()
    tasks = [
        asyncio.create_task(ingestor.run(), name="event-ingestor"),
        asyncio.create_task(ingestor.follow_announcements(), name="stored-events"),
        asyncio.create_task(sweeper.run(), name="job-sweeper"),
    ]
    grpc_server = None
    if config.grpc.enabled:
        from .api.grpc.server import start_grpc_server

        grpc_server = await start_grpc_server(app[CONTEXT_KEY], config.grpc.host, config.grpc.port)
    log.info(
        "gateway {} ({}) serving on {}:{}",
        __version__,
        gateway_id,
        config.api.host,
        config.api.port,
    )
    try:
        yield
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        await jobs.close()
        ingestor.stop()
        for task in tasks:
            await cancel_and_wait(task)
        await inference.stop()
        await applier.stop()
        await transport.close()
        await engine.dispose()


def build_app(config: GatewayConfig, tools: ToolService) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, mcp_origin_middleware, auth_middleware],
        client_max_size=config.api.max_body,
    )
    app[BODY_LIMIT_KEY] = config.api.max_body
    add_health_routes(app)
    add_job_routes(app)
    add_mcp_routes(app)
    add_kserve_routes(app)
    add_openapi_route(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async for _ in _background(app, config, tools):
            yield

    app.cleanup_ctx.append(lifetime)
    return app


async def serve(config: GatewayConfig) -> None:
    tools = ToolService(config.tools.path)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, tools.reload)
    await serve_until_stopped(build_app(config, tools), config.api.host, config.api.port)


def run(config: GatewayConfig) -> None:
    with new_runner() as runner:
        runner.run(serve(config))

"""Assemble the manager: database and Redis clients → repositories → services → REST handlers,
plus the scheduling leader's control loop (``./backend.ai mgr start-server``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from ai.backend.common import __version__
from ai.backend.common.aio import cancel_and_wait, new_runner
from ai.backend.common.db.engine import create_engine_from_config
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_connection import redis_client
from ai.backend.common.web import BODY_LIMIT_KEY, error_middleware, serve_until_stopped

from .api import actor_logs as actor_logs_api
from .api import actors as actors_api
from .api import admin as admin_api
from .api import agents as agents_api
from .api import health as health_api
from .api import models as models_api
from .api import openapi as openapi_api
from .api.context import CONTEXT_KEY, ManagerContext
from .api.middlewares import auth_middleware
from .clients.agent_logs import AgentLogClient
from .clients.agent_poke import AgentPoker
from .clients.queue_depth import queue_depths
from .config import ManagerConfig
from .repositories.actors import ActorRepository
from .repositories.agents import AgentRepository
from .repositories.api_tokens import ApiTokenRepository
from .repositories.autoscaling import AutoscalingRepository
from .repositories.keypairs import KeypairRepository
from .repositories.log_sources import LogSourceRepository
from .repositories.models import ModelRepository
from .repositories.replicas import ReplicaPlanRepository
from .repositories.stats import StatsRepository
from .services.actor_logs import ActorLogService
from .services.actors import ActorService
from .services.agents import AgentService
from .services.api_tokens import ApiTokenService
from .services.auth import AuthService
from .services.autoscaling.autoscaler import Autoscaler
from .services.control_loop import ControlLoop, NamedStep
from .services.keypairs import KeypairService
from .services.lost_agents import LostAgentSweep
from .services.metrics import ManagerMetrics
from .services.models import ModelService
from .services.planning import ReplicaPlanner
from .services.scheduling.leader import LeaderElection
from .services.scheduling.scheduler import Scheduler

log = BraceStyleAdapter(logging.getLogger(__name__))

MAX_BODY = 1024 * 1024
PRUNE_EVERY = timedelta(minutes=1)


async def _background(app: web.Application, config: ManagerConfig) -> AsyncIterator[None]:
    """Everything with a lifetime: engine, Redis, leader election, control loop, metrics."""
    engine = create_engine_from_config(config.db)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    redis = redis_client(config.redis.url)
    prefix = config.redis.prefix

    async def queue_depth(actor: str) -> int | None:
        try:
            return (await queue_depths(redis, prefix, [actor])).get(actor, 0)
        except Exception:
            log.warning("queue depth of {} unavailable (Redis)", actor)
            return None

    keypairs = KeypairRepository(sessions)
    actor_repo = ActorRepository(sessions)
    agent_repo = AgentRepository(sessions)
    planner = ReplicaPlanRepository(sessions)
    metrics = ManagerMetrics(StatsRepository(sessions))
    leader = LeaderElection(config.db.url, retry_interval=config.scheduler.interval.total_seconds())
    scheduler = Scheduler(sessions, config.scheduler)
    autoscaler = Autoscaler(
        repository=AutoscalingRepository(sessions), redis=redis, key_prefix=prefix
    )
    poker = AgentPoker()
    agent_logs = AgentLogClient()
    planner_pass = ReplicaPlanner(planner)
    timeout = config.scheduler.agent_timeout

    pruned_at: list[datetime] = []

    async def prune_history(now: datetime) -> None:
        if pruned_at and now - pruned_at[0] < PRUNE_EVERY:
            return
        pruned_at[:] = [now]
        replicas, events = await planner.prune(
            now=now,
            replicas_older_than=config.history.replicas,
            events_older_than=config.history.events,
        )
        if replicas or events:
            log.info("history: forgot {} ended replica(s) and {} event(s)", replicas, events)

    async def poke_agents(now: datetime) -> None:
        await poker.poke(await agent_repo.addrs_with_news())

    control = ControlLoop(
        leader=leader,
        interval=config.scheduler.interval.total_seconds(),
        steps=[
            NamedStep("lost-agents", lambda now: sweep.run(now)),
            NamedStep("autoscaler", autoscaler.run_once),
            NamedStep("planner", planner_pass.run),
            NamedStep("scheduler", scheduler.run_once),
            NamedStep("poke-agents", poke_agents),
            NamedStep("history", prune_history),
        ],
    )
    sweep = LostAgentSweep(agent_repo, timeout=timeout, leading_for=control.leading_for)
    actor_service = ActorService(actor_repo, queue_depth)
    app[CONTEXT_KEY] = ManagerContext(
        auth=AuthService(keypairs),
        actors=actor_service,
        actor_logs=ActorLogService(LogSourceRepository(sessions), agent_logs),
        agents=AgentService(agent_repo),
        keypairs=KeypairService(keypairs),
        tokens=ApiTokenService(ApiTokenRepository(sessions)),
        models=ModelService(ModelRepository(sessions)),
        leader=leader,
        control=control,
        registry=metrics.registry,
        version=__version__,
    )
    await actor_service.ensure_crew()
    stop = asyncio.Event()
    await leader.start()

    async def refresh_metrics() -> None:
        while not stop.is_set():
            try:
                await metrics.refresh(is_leader=leader.is_leader)
            except Exception:
                log.warning("metrics refresh failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=config.scheduler.interval.total_seconds()
                )

    tasks = [
        asyncio.create_task(control.run(stop), name="control-loop"),
        asyncio.create_task(refresh_metrics(), name="metrics"),
    ]
    log.info("manager {} serving on {}:{}", __version__, config.api.host, config.api.port)
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            await cancel_and_wait(task)
        await leader.stop()
        await poker.close()
        await agent_logs.close()
        await redis.aclose()
        await engine.dispose()


def build_app(config: ManagerConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY)
    app[BODY_LIMIT_KEY] = MAX_BODY
    for module in (
        health_api,
        admin_api,
        agents_api,
        actors_api,
        actor_logs_api,
        models_api,
        openapi_api,
    ):
        module.add_routes(app)
    actor_logs_api.limit_followed_streams(app, config.logs.max_followed_streams_per_key)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async for _ in _background(app, config):
            yield

    app.cleanup_ctx.append(lifetime)
    return app


async def serve(config: ManagerConfig) -> None:
    await serve_until_stopped(build_app(config), config.api.host, config.api.port)


def run(config: ManagerConfig) -> None:
    with new_runner() as runner:
        runner.run(serve(config))

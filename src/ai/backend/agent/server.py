"""Assemble and run the agent: resources, adoption, the heartbeat loop and the HTTP API.

Every ``heartbeat_interval`` the agent posts its slots, devices and replica reports to the
manager and reconciles its replicas with the reply. While the manager is unreachable it keeps
running what it runs and tries again (logging once per change of state). On SIGTERM or SIGINT
it stops heartbeating and exits, leaving the replicas running for the next agent to adopt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import Mapping

from aiohttp import web

from ai.backend.common import __version__
from ai.backend.common.aio import cancel_and_wait, new_runner
from ai.backend.common.dto.agent import AgentHeartbeat, ReplicaStatus
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.web import BODY_LIMIT_KEY, error_middleware

from .api.logs import ReplicaLogsApi
from .clients.manager import ManagerClient, ManagerUnavailable
from .config import AgentConfig
from .metrics import AgentMetrics
from .services.launch import LaunchSettings
from .services.reconciler import Reconciler
from .services.replica_logs import ReplicaLogReader
from .services.request_auth import RequestVerifier
from .services.resources import NodeResources, detect_resources
from .services.supervisor import SupervisionSettings

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


def supervision_settings(config: AgentConfig) -> SupervisionSettings:
    agent = config.agent
    return SupervisionSettings(
        restart_backoff=agent.restart_backoff.total_seconds(),
        restart_backoff_max=agent.restart_backoff_max.total_seconds(),
        stable_period=agent.stable_period.total_seconds(),
        crash_limit=agent.crash_limit,
        kill_grace=agent.kill_grace.total_seconds(),
    )


def launch_settings(config: AgentConfig, base_env: Mapping[str, str]) -> LaunchSettings:
    return LaunchSettings(
        redis_url=config.redis.url,
        redis_prefix=config.redis.prefix,
        claim_idle=config.agent.claim_idle.total_seconds(),
        base_env=base_env,
        stuck_grace=config.agent.stuck_grace.total_seconds(),
    )


MAX_BODY = 1024 * 1024  # the agent's API takes no bodies; aiohttp's default limit
STARTING_INTERVAL = 0.25  # seconds between heartbeats while a replica is starting


class AgentServer:
    def __init__(self, config: AgentConfig, *, base_env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.reconciler = Reconciler(
            state_dir=config.agent.resolved_state_dir,
            supervision=supervision_settings(config),
            launch=launch_settings(config, os.environ if base_env is None else base_env),
        )
        self.manager = ManagerClient(
            api=config.manager.api,
            access_key=config.manager.access_key,
            secret_key=config.manager.secret_key,
        )
        self.resources: NodeResources | None = None
        self.metrics: AgentMetrics | None = None
        self.manager_reachable = False
        self._last_problem: str | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._stop_heartbeats = asyncio.Event()
        self._poked = asyncio.Event()
        self.boot_id = uuid.uuid4().hex  # this process; with `seq`, orders its heartbeats
        self.seq = 0
        self._http: web.AppRunner | None = None

    @property
    def agent_id(self) -> str:
        return self.config.agent.id

    async def start(self) -> None:
        self.resources = await detect_resources(self.config.resources)
        log.info(
            "agent {} offers {} ({} GPUs)",
            self.agent_id,
            self.resources.slots_total.to_json(),
            len(self.resources.devices),
        )
        self.metrics = AgentMetrics(
            reports=self.reconciler.reports, slots_total=self.resources.slots_total
        )
        adopted = await self.reconciler.adopt_existing()
        if adopted:
            log.info("adopted {} replicas left running by the previous agent", len(adopted))
        await self._start_http()
        self._heartbeats = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")

    def heartbeat_body(self) -> AgentHeartbeat:
        assert self.resources is not None
        api = self.config.api
        return AgentHeartbeat(
            agent_id=self.agent_id,
            addr=f"http://{api.host}:{api.port}",
            version=__version__,
            slots_total=self.resources.slots_total,
            devices=self.resources.devices,
            labels=self.config.agent.labels,
            replicas=self.reconciler.reports(),
            boot_id=self.boot_id,
            seq=self.seq,
        )

    async def heartbeat_once(self) -> bool:
        """One heartbeat and, with an answer, one reconciliation; whether the manager answered."""
        self.seq += 1
        try:
            reply = await self.manager.heartbeat(self.heartbeat_body())
        except ManagerUnavailable as e:
            self.manager_reachable = False
            if self.metrics is not None:
                self.metrics.heartbeat_failures += 1
            if str(e) != self._last_problem:
                log.warning("heartbeat failed: {}; retrying every {}", e, self._interval)
                self._last_problem = str(e)
            return False
        if not self.manager_reachable:
            log.info("heartbeat answered by the manager at {}", self.config.manager.api)
        self.manager_reachable = True
        self._last_problem = None
        await self.reconciler.reconcile(reply.desired)
        return True

    @property
    def _interval(self) -> str:
        return f"{self.config.agent.heartbeat_interval.total_seconds():g} s"

    async def _heartbeat_loop(self) -> None:
        interval = self.config.agent.heartbeat_interval.total_seconds()
        while not self._stop_heartbeats.is_set():
            self._poked.clear()
            try:
                await self.heartbeat_once()
            except Exception:
                log.exception("reconciling failed; trying again at the next heartbeat")
            waiters = {
                asyncio.ensure_future(self._stop_heartbeats.wait()),
                asyncio.ensure_future(self._poked.wait()),
            }
            # while a replica is starting, beat often: the manager (and `actor get`) hears it
            # runs within a fraction of a second, not a whole period later
            starting = any(r.status is ReplicaStatus.STARTING for r in self.reconciler.reports())
            wait = min(interval, STARTING_INTERVAL) if starting else interval
            try:
                await asyncio.wait(waiters, timeout=wait, return_when="FIRST_COMPLETED")
            finally:
                for waiter in waiters:
                    waiter.cancel()

    # --- HTTP ------------------------------------------------------------------------------

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "agent_id": self.agent_id,
                "manager_reachable": self.manager_reachable,
                "replicas": len(self.reconciler.supervisors),
            }
        )

    async def _poke(self, _request: web.Request) -> web.Response:
        """The manager has news (replicas placed or retired): heartbeat now instead of at the
        next period. Carries nothing and changes nothing by itself, so it needs no auth."""
        self._poked.set()
        return web.Response(status=204)

    async def _metrics(self, _request: web.Request) -> web.Response:
        assert self.metrics is not None
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def _start_http(self) -> None:
        app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
        app[BODY_LIMIT_KEY] = MAX_BODY
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/poke", self._poke)
        logs_api = ReplicaLogsApi(
            reader=ReplicaLogReader(self.config.agent.resolved_state_dir),
            verifier=RequestVerifier(
                access_key=self.config.manager.access_key,
                secret_key=self.config.manager.secret_key,
            ),
        )
        logs_api.add_routes(app)  # signed with this agent's keypair
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.config.api.host, self.config.api.port)
        await site.start()
        log.info("agent API on http://{}:{}", self.config.api.host, self.config.api.port)

    # --- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop heartbeating and serving; the replicas keep running."""
        self._stop_heartbeats.set()
        await cancel_and_wait(self._heartbeats)  # a request in flight is abandoned
        await self.reconciler.detach()
        if self._http is not None:
            await self._http.cleanup()
        await self.manager.close()


async def serve_until_signalled(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = AgentServer(config)
    try:
        await server.start()
        await stop.wait()
        log.info("stopping; the replicas keep running and are adopted at the next start")
    finally:
        await server.close()


def run(config: AgentConfig) -> None:
    with new_runner() as runner:
        runner.run(serve_until_signalled(config))

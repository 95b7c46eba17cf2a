"""What handlers reach through ``request.app``: the services, set up by ``server.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..config import GatewayConfig
from ..services.auth import AuthService
from ..services.inference import InferenceService
from ..services.jobs import Caller, JobService
from ..services.tools import ToolService


@dataclass(frozen=True)
class GatewayContext:
    config: GatewayConfig
    gateway_id: str
    auth: AuthService
    tools: ToolService
    jobs: JobService
    inference: InferenceService
    registry: CollectorRegistry
    version: str
    # {"postgresql": ok, "redis": ok}, each checked with a short timeout
    probe: Callable[[], Awaitable[dict[str, bool]]]
    # updates the gauges read from the database and Redis before a scrape
    refresh_metrics: Callable[[], Awaitable[None]]
    # whether this replica applies the job events now (one replica at a time does)
    is_applier: Callable[[], bool]


CONTEXT_KEY = web.AppKey("gateway_context", GatewayContext)
CALLER_KEY = web.RequestKey("caller", Caller)


def context(request: web.Request) -> GatewayContext:
    return request.app[CONTEXT_KEY]


def caller(request: web.Request) -> Caller:
    """Who signed the request (set by the auth middleware)."""
    who: Caller = request[CALLER_KEY]
    return who

"""What handlers reach through ``request.app``: the services, set up by ``server.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from ai.backend.common.dto.manager_api import KeypairInfo
from ai.backend.common.web import json_response

from ..services.actor_logs import ActorLogService
from ..services.actors import ActorService
from ..services.agents import AgentService
from ..services.api_tokens import ApiTokenService
from ..services.auth import AuthService
from ..services.control_loop import ControlLoop, Leadership
from ..services.keypairs import KeypairService
from ..services.models import ModelService


@dataclass(frozen=True)
class ManagerContext:
    auth: AuthService
    actors: ActorService
    actor_logs: ActorLogService
    agents: AgentService
    keypairs: KeypairService
    tokens: ApiTokenService
    models: ModelService
    leader: Leadership
    control: ControlLoop
    registry: CollectorRegistry
    version: str


CONTEXT_KEY = web.AppKey("manager_context", ManagerContext)
KEYPAIR_KEY = web.RequestKey("keypair", KeypairInfo)


def context(request: web.Request) -> ManagerContext:
    return request.app[CONTEXT_KEY]


def caller(request: web.Request) -> KeypairInfo:
    keypair: KeypairInfo = request[KEYPAIR_KEY]
    return keypair


def list_response(items: Sequence[BaseModel]) -> web.Response:
    """``{"items": [...], "next_cursor": null}``: every list of the API has this shape."""
    return json_response({"items": [i.model_dump(mode="json") for i in items], "next_cursor": None})

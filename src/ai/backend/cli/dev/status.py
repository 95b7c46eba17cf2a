"""``dev status``: every process of the stack with its pid, port and health, and the actors
with their replicas as the manager reports them."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path

import aiohttp
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .embedded import postgres_answers, redis_answers
from .health import is_healthy, probe
from .manager_api import ManagerApi, ManagerApiError, ManagerUnreachable
from .processes import is_running, owns_listener
from .record import DataServiceRecord, ServiceRecord, StackRecord


class Health(StrEnum):
    OK = "ok"
    UNHEALTHY = "unhealthy"  # the process runs, its health check fails
    STOPPED = "stopped"  # the process does not run
    UNREACHABLE = "unreachable"  # an external server that does not answer


class ServiceStatus(BaseModel):
    name: str
    kind: str  # postgres, redis, manager, gateway, agent
    embedded: bool | None = None  # postgres and redis only
    pid: int | None
    port: int | None
    url: str
    health: Health
    log: Path | None


class ReplicaStatus(BaseModel):
    id: str
    status: str
    agent_id: str | None
    status_info: str | None


class ActorStatus(BaseModel):
    name: str
    status: str
    desired_replicas: int
    running_replicas: int
    replicas: list[ReplicaStatus]


class StackStatus(BaseModel):
    state_dir: Path
    services: list[ServiceStatus]
    actors: list[ActorStatus]
    actors_error: str | None = None  # why the actors could not be read

    @property
    def healthy(self) -> bool:
        return bool(self.services) and all(s.health is Health.OK for s in self.services)


async def _data_service_status(record: DataServiceRecord) -> ServiceStatus:
    answers = postgres_answers if record.name == "postgres" else redis_answers
    if record.embedded and not is_running(record.process):
        health = Health.STOPPED
    elif await answers(record.url):
        health = Health.OK
    else:
        health = Health.UNHEALTHY if record.embedded else Health.UNREACHABLE
    return ServiceStatus(
        name=record.name,
        kind=record.name,
        embedded=record.embedded,
        pid=record.process.pid if record.embedded and record.process else None,
        port=None,
        url=record.url,
        health=health,
        log=record.log,
    )


async def _service_status(http: aiohttp.ClientSession, record: ServiceRecord) -> ServiceStatus:
    if not is_running(record.process):
        health = Health.STOPPED
    elif is_healthy(record.kind, await probe(http, record.health_url)) and owns_listener(
        record.process, record.port
    ):
        health = Health.OK
    else:
        health = Health.UNHEALTHY
    return ServiceStatus(
        name=record.name,
        kind=record.kind.value,
        pid=record.process.pid,
        port=record.port,
        url=record.url,
        health=health,
        log=record.log,
    )


async def _actors(http: aiohttp.ClientSession, record: StackRecord) -> list[ActorStatus]:
    manager = ManagerApi(http, record.services["manager"].url, record.keypairs["admin"])
    summaries = await manager.list_actors()
    details = await asyncio.gather(*(manager.get_actor(s.name) for s in summaries))
    return [
        ActorStatus(
            name=info.name,
            status=info.status.value,
            desired_replicas=info.desired_replicas,
            running_replicas=info.running_replicas,
            replicas=[
                ReplicaStatus(
                    id=r.id, status=r.status.value, agent_id=r.agent_id, status_info=r.status_info
                )
                for r in info.replicas
            ],
        )
        for info in details
    ]


async def read_status(record: StackRecord) -> StackStatus:
    async with aiohttp.ClientSession() as http:
        data_services = [r for r in (record.db, record.redis) if r is not None]
        services = list(await asyncio.gather(*(_data_service_status(r) for r in data_services)))
        services += await asyncio.gather(
            *(_service_status(http, r) for r in record.services.values())
        )
        status = StackStatus(state_dir=record.state_dir, services=services, actors=[])
        manager = next((s for s in services if s.name == "manager"), None)
        if manager is None or manager.health is not Health.OK or "admin" not in record.keypairs:
            status.actors_error = "the manager is not running"
            return status
        try:
            status.actors = await _actors(http, record)
        except (ManagerApiError, ManagerUnreachable) as e:
            status.actors_error = f"the manager did not list the actors: {e}"
        return status


HEALTH_STYLES = {
    Health.OK: "green",
    Health.UNHEALTHY: "red",
    Health.STOPPED: "dim",
    Health.UNREACHABLE: "red",
}


def print_status(console: Console, status: StackStatus) -> None:
    services = Table(title="services", title_justify="left")
    for column in ("service", "pid", "port", "health", "url"):
        services.add_column(column)
    for s in status.services:
        name = s.name + (" (embedded)" if s.embedded else "")
        health = f"[{HEALTH_STYLES[s.health]}]{s.health.value}[/]"
        pid = "-" if s.pid is None else str(s.pid)
        port = "-" if s.port is None else str(s.port)
        services.add_row(escape(name), pid, port, health, escape(s.url))
    console.print(services)
    if status.actors_error:
        console.print(f"actors: {escape(status.actors_error)}")
        return
    actors = Table(title="actors", title_justify="left")
    for column in ("actor", "status", "running/desired", "replicas"):
        actors.add_column(column)
    for actor in status.actors:
        replicas = ", ".join(
            f"{r.id} {r.status}" + (f" on {r.agent_id}" if r.agent_id else "")
            for r in actor.replicas
            if r.status != "terminated"
        )
        actors.add_row(
            escape(actor.name),
            actor.status,
            f"{actor.running_replicas}/{actor.desired_replicas}",
            escape(replicas or "-"),
        )
    console.print(actors)

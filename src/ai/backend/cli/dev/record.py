"""``dev/stack.json``: what the dev stack runs, so that ``dev status|logs|down`` and the next
``dev up`` find it. Written atomically and readable only by its owner (it holds the dev
keypairs)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import DevStackError
from .paths import write_private_file


class RecordModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ServiceKind(StrEnum):
    MANAGER = "manager"
    GATEWAY = "gateway"
    AGENT = "agent"


class ProcessRecord(RecordModel):
    """A process by pid and start time (``/proc/<pid>/stat`` field 22), so that a recycled pid
    is never taken for it."""

    pid: int
    start_time: int


class ServiceRecord(RecordModel):
    name: str  # "manager", "gateway", "agent-1", …
    kind: ServiceKind
    process: ProcessRecord
    port: int
    url: str
    health_url: str
    log: Path
    config: Path
    grpc_port: int | None = None  # gateway
    agent_id: str | None = None  # agents
    state_dir: Path | None = None  # agents: their replicas' files
    mock_gpus: int = 0  # agents


class DataServiceRecord(RecordModel):
    """PostgreSQL or Redis: an external server the stack uses, or an embedded one it started."""

    name: Literal["postgres", "redis"]
    url: str
    embedded: bool
    process: ProcessRecord | None = None  # embedded only
    data_dir: Path | None = None
    log: Path | None = None
    server: str | None = None  # embedded: the binary and its version


class KeypairRecord(RecordModel):
    access_key: str
    secret_key: str


class StackRecord(RecordModel):
    version: Literal[1] = 1
    state_dir: Path
    redis_prefix: str
    db: DataServiceRecord | None = None
    redis: DataServiceRecord | None = None
    keypairs: dict[str, KeypairRecord] = Field(default_factory=dict)  # by role
    services: dict[str, ServiceRecord] = Field(default_factory=dict)  # by name, start order
    client_config_backup: Path | None = None  # the client.toml `dev up` found and kept aside
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def service_processes(self) -> list[ServiceRecord]:
        return list(self.services.values())

    def agents(self) -> list[ServiceRecord]:
        return [s for s in self.services.values() if s.kind is ServiceKind.AGENT]


def load_record(path: Path) -> StackRecord | None:
    """The recorded stack, or ``None`` when there is none; a damaged file is an error naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return StackRecord.model_validate_json(text)
    except ValidationError as e:
        raise DevStackError(
            f"{path} is not a stack record ({e.error_count()} problems);"
            " stop what runs by hand, then remove it"
        ) from None


def save_record(path: Path, record: StackRecord) -> None:
    record.updated_at = datetime.now(UTC)
    write_private_file(path, record.model_dump_json(indent=2) + "\n")

"""A data plane of real processes for tests: runtimes, sidecars and the crew on one Redis key
prefix, plus helpers to publish envelopes and read what happened to them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from ai.backend.common.dto.envelope import Envelope, Route
from ai.backend.common.transport.base import JobEndResult
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import RedisStreamsTransport

from .processes import Child, ProcessGroup
from .runtime import RuntimeLauncher

TERMINAL_KINDS = ("succeeded", "failed", "cancelled")


def toml_value(value: Any) -> str:
    """A TOML value (inline tables for mappings) for the simple data of an actor spec."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


EXECUTION_MODES = ("runtime", "inprocess")


@dataclass
class DataPlane:
    """``execution`` is how :meth:`start_actor` runs an actor: ``runtime`` (a runtime process
    beside its sidecar) or ``inprocess`` (the sidecar alone, running the handler itself)."""

    processes: ProcessGroup
    redis: Redis
    keys: RedisKeys
    workdir: Path
    sockets: dict[str, Path] = field(default_factory=dict)
    execution: str = "runtime"

    # --- processes -------------------------------------------------------------------------

    def start_runtime(self, name: str, handler: str, *args: str) -> Child:
        launcher = RuntimeLauncher(self.processes, self.workdir)
        child, self.sockets[name] = launcher.start(handler, *args, name=name)
        return child

    def start_runtime_unless_inprocess(self, name: str, handler: str, *args: str) -> None:
        """The runtime that sidecars of ``name`` started next will call; in-process, they load
        the handler of their spec themselves."""
        if self.execution != "inprocess":
            self.start_runtime(name, handler, *args)

    async def start_sidecar(
        self,
        actor: str,
        *,
        spec: Mapping[str, Any] | None = None,
        sidecar: Mapping[str, Any] | None = None,
        consumer: str | None = None,
        socket_of: str | None = None,
    ) -> Child:
        consumer = consumer or f"{actor}-{len(self.processes.children)}"
        args = ["sidecar", "run", "--actor", actor, "--consumer", consumer]
        if spec is not None and self.execution == "inprocess":
            spec = {**spec, "execution": "inprocess"}
        socket_path = self.sockets.get(socket_of or actor)
        if socket_path is not None and self.execution != "inprocess":
            args += ["--socket", str(socket_path)]
        config = self.workdir / f"sidecar-{consumer}.toml"
        lines = ["[sidecar]"] + [f"{k} = {toml_value(v)}" for k, v in (sidecar or {}).items()]
        if spec is not None:
            lines += ["[actor]"] + [f"{k} = {toml_value(v)}" for k, v in spec.items()]
        config.write_text("\n".join(lines) + "\n")
        child = self.processes.start(f"sidecar-{consumer}", [*args, "--config", str(config)])
        await self.wait_for(
            lambda: self._has_consumer(actor, consumer), what=f"sidecar {consumer}", watch=[child]
        )
        return child

    async def start_actor(
        self,
        actor: str,
        handler: str,
        *,
        spec: Mapping[str, Any] | None = None,
        runtime_args: Sequence[str] = (),
        sidecar: Mapping[str, Any] | None = None,
    ) -> tuple[Child | None, Child]:
        """The actor's runtime (``None`` in-process) and sidecar; ``runtime_args`` go to the
        runtime (there is none in-process)."""
        full_spec = {"name": actor, "handler": handler, **(spec or {})}
        if self.execution == "inprocess":
            if runtime_args:
                raise ValueError(f"an in-process actor has no runtime for {runtime_args}")
            return None, await self.start_sidecar(actor, spec=full_spec, sidecar=sidecar)
        concurrency = (spec or {}).get("concurrency", 1)
        runtime = self.start_runtime(
            actor, handler, "--concurrency", str(concurrency), *runtime_args
        )
        return runtime, await self.start_sidecar(actor, spec=full_spec, sidecar=sidecar)

    async def start_crew(self) -> None:
        for name in ("happy-end", "error-end"):
            await self.start_sidecar(name)

    async def has_consumers(self, actor: str) -> bool:
        """Some sidecar consumes ``actor``'s stream."""
        try:
            return bool(await self.redis.xinfo_consumers(self.keys.actor_stream(actor), actor))
        except Exception:
            return False

    async def _has_consumer(self, actor: str, consumer: str) -> bool:
        try:
            consumers = await self.redis.xinfo_consumers(self.keys.actor_stream(actor), actor)
        except Exception:
            return False
        return any(c["name"] in (consumer, consumer.encode()) for c in consumers)

    # --- messages --------------------------------------------------------------------------

    async def publish(self, actors: list[str], payload: Any, **fields: Any) -> Envelope:
        envelope = Envelope(route=Route(actors=actors), payload=payload, **fields)
        await self.publish_envelope(envelope)
        return envelope

    async def publish_envelope(self, envelope: Envelope) -> None:
        await self.redis.xadd(
            self.keys.actor_stream(envelope.route.current_actor), {"e": envelope.to_json_bytes()}
        )

    async def events(self, job_id: str | None = None) -> list[dict[str, Any]]:
        entries: Any = await self.redis.xrange(self.keys.events)
        events = [orjson.loads(fields[b"ev"]) for _id, fields in entries]
        return [e for e in events if job_id is None or e.get("job_id") == job_id]

    async def terminal_events(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in await self.events(job_id) if e["kind"] in TERMINAL_KINDS]

    async def wait_terminal(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def terminal() -> bool:
            found[:] = await self.terminal_events(job_id)
            return bool(found)

        await self.wait_for(terminal, what=f"the end of job {job_id}", timeout=timeout)
        return found[0]

    async def cancel(self, job_id: str, reason: str = "cancelled by the test") -> JobEndResult:
        transport = RedisStreamsTransport(self.redis, prefix=self.keys.prefix)
        return await transport.cancel_job(job_id, reason)

    async def busy_queues(self) -> list[str]:
        """The actor streams of this plane that have entries pending or undelivered, and
        ``retry`` while delayed retries wait: empty once everything published was handled."""
        busy = []
        async for key in self.redis.scan_iter(match=f"{self.keys.actor_stream_prefix}*"):
            stream = key.decode()
            if stream.endswith(":dlq"):
                continue
            actor = stream.removeprefix(self.keys.actor_stream_prefix)
            info: Any = await self.redis.xinfo_stream(stream)
            groups: Any = await self.redis.xinfo_groups(stream)
            if not groups and info["length"]:
                busy.append(actor)
            for group in groups:
                # lag is unknown after deletions: then compare with the newest entry's id
                undelivered = group.get("lag")
                if undelivered is None:
                    undelivered = group["last-delivered-id"] != info["last-generated-id"]
                if group["pending"] or undelivered:
                    busy.append(actor)
        if await self.redis.zcard(self.keys.retry):
            busy.append("retry")
        return busy

    async def wait_quiescent(self, timeout: float = 30) -> None:
        """Wait until no stream of the plane has work pending or undelivered and no retry is
        scheduled: then no duplicate or late event is still on its way."""

        async def quiet() -> bool:
            return not await self.busy_queues()

        await self.wait_for(quiet, what="no stream with work left", timeout=timeout)

    async def dead_letter_entries(self, actor: str) -> list[tuple[bytes, dict[str, Any]]]:
        """The actor's dead letters as they are: the original message's bytes, and the error."""
        entries: Any = await self.redis.xrange(self.keys.dead_letters(actor))
        return [(f[b"e"], orjson.loads(f[b"err"])) for _id, f in entries]

    async def dead_letters(self, actor: str) -> list[dict[str, Any]]:
        """The actor's dead letters whose messages are envelopes, parsed."""
        return [
            {"envelope": orjson.loads(body), "error": error}
            for body, error in await self.dead_letter_entries(actor)
        ]

    async def wait_for(
        self,
        condition: Any,
        *,
        what: str,
        timeout: float = 20,
        watch: Sequence[Child] = (),
    ) -> None:
        """Await the async ``condition`` until it is true (polling, without blocking the loop)."""
        deadline = time.monotonic() + timeout
        while not await condition():
            for child in watch:
                if not child.alive():
                    raise AssertionError(
                        f"{child.name} exited while waiting for {what}:\n{child.log()}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout} s waiting for {what}\n{self.processes.logs()}"
                )
            await asyncio.sleep(0.02)

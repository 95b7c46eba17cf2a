"""``dev up``: PostgreSQL and Redis (configured or embedded), the schema, the dev keypairs, then
manager → gateway + agents as detached processes, each health-checked; the client config, the
example actors and tools. What already runs healthy is kept, so a second ``dev up`` starts only
what is missing (and says so)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Any

import aiohttp

from .client_config import ClientConfigWritten, write_client_config
from .configs import (
    HOST,
    StackEndpoints,
    agent_config,
    environment_keys,
    gateway_config,
    manager_config,
    write_config,
)
from .console import StepPrinter
from .data_services import check_unchanged, choose_postgres, choose_redis
from .embedded import postgres_answers, redis_answers
from .errors import DevStackError
from .examples import ExamplesManifest, ExamplesOutcome, apply_actors, install_tools, read_manifest
from .health import probe, wait_until_healthy
from .keypairs import ensure_keypairs
from .manager_api import ManagerApi
from .paths import DevPaths
from .processes import (
    StartedProcess,
    child_environment,
    cli_command,
    is_running,
    run_cli,
    signal_process,
    spawn_detached,
)
from .record import (
    DataServiceRecord,
    KeypairRecord,
    ProcessRecord,
    ServiceKind,
    ServiceRecord,
    StackRecord,
    load_record,
    save_record,
)
from .settings import UpSettings, check_ports_free

TOOLS_RELOAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Examples:
    manifest: ExamplesManifest | None
    outcome: ExamplesOutcome


@dataclass
class Launch:
    """A service about to start: its record and how to run it."""

    record: ServiceRecord
    document: dict[str, Any]

    def command(self) -> list[str]:
        group = {ServiceKind.MANAGER: "mgr", ServiceKind.GATEWAY: "gw", ServiceKind.AGENT: "ag"}
        return cli_command(
            group[self.record.kind], "start-server", "--config", str(self.record.config)
        )

    def start(self) -> StartedProcess:
        write_config(self.record.config, self.document)
        env = child_environment(drop=environment_keys(self.document))
        started = spawn_detached(self.command(), env=env, log=self.record.log)
        self.record.process = started.record
        return started


class StackStarter:
    def __init__(
        self,
        settings: UpSettings,
        paths: DevPaths,
        printer: StepPrinter,
        http: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.printer = printer
        self.http = http
        self.record = StackRecord(state_dir=paths.root, redis_prefix=settings.redis_prefix)

    def save(self) -> None:
        save_record(self.paths.stack_file, self.record)

    async def run(self) -> tuple[StackRecord, ClientConfigWritten]:
        self.paths.prepare()
        self.record = load_record(self.paths.stack_file) or self.record
        recorded_keys = {keys.access_key for keys in self.record.keypairs.values()}
        alive = {n: s for n, s in self.record.services.items() if is_running(s.process)}
        self.record.services = alive
        if alive:
            self._check_running_stack_matches()
        wanted = ["manager", "gateway", *self.settings.agent_names()]
        missing = [name for name in wanted if name not in alive]
        check_ports_free(
            {n: p for n, p in self.settings.ports().items() if n.split(" ")[0] in missing}
        )
        self.save()  # from here on, what starts is recorded as soon as it runs
        await self._data_services(running=bool(alive))
        self.record.redis_prefix = self.record.redis_prefix if alive else self.settings.redis_prefix
        self.save()
        examples = self._install_tools()  # before the gateway starts: it reads them at start
        if alive:
            await self._check_running_healthy(alive)
        if missing:
            await self._start_missing(missing)
        else:
            self.printer.info("every service already runs and is healthy")
        client_config = self._write_client_config(recorded_keys)
        await self._apply_examples(examples, gateway_reused="gateway" not in missing)
        return self.record, client_config

    def _write_client_config(self, recorded_keys: set[str]) -> ClientConfigWritten:
        dev_keys = recorded_keys | {keys.access_key for keys in self.record.keypairs.values()}
        written = write_client_config(self.record, dev_keys)
        if written.backup is not None:
            self.record.client_config_backup = written.backup
            self.save()
            pointed_at = f" (it pointed at {written.previous_endpoint})" * bool(
                written.previous_endpoint
            )
            self.printer.note(
                f"{written.path} held another configuration{pointed_at}: kept as"
                f" {written.backup}; the client now uses the dev stack"
                " (`dev down --purge` puts the old one back)"
            )
        return written

    def _check_running_stack_matches(self) -> None:
        assert self.record.db is not None and self.record.redis is not None
        check_unchanged("PostgreSQL", self.settings.db, self.record.db)
        check_unchanged("Redis", self.settings.redis, self.record.redis)
        if self.settings.redis_prefix != self.record.redis_prefix:
            raise DevStackError(
                f"the running dev stack uses the Redis key prefix {self.record.redis_prefix!r},"
                f" not {self.settings.redis_prefix!r}: run `./backend.ai dev down` first"
            )
        wanted = set(self.settings.agent_names())
        for agent in self.record.agents():
            if agent.name not in wanted:
                self.printer.note(f"{agent.name} keeps running; `dev down` stops it")
            elif agent.mock_gpus != self.settings.mock_gpus:
                self.printer.note(
                    f"{agent.name} keeps running with {agent.mock_gpus} mock GPU(s);"
                    " `dev down` first to change it"
                )

    # --- PostgreSQL and Redis ------------------------------------------------------------

    async def _data_services(self, *, running: bool) -> None:
        settings = self.settings
        if running:  # the running services stay on what they use
            await self._require_external_answers(self.record.db)
            await self._require_external_answers(self.record.redis)
        with self.printer.step("PostgreSQL", "PostgreSQL ready"):
            self.record.db = await choose_postgres(settings.db, self.record.db, self.paths)
        self.save()
        self.printer.note(_describe_data_service(self.record.db))

        def redis_started(started: DataServiceRecord) -> None:
            self.record.redis = started
            self.save()

        with self.printer.step("Redis", "Redis ready"):
            self.record.redis = await choose_redis(
                settings.redis,
                self.record.redis,
                self.paths,
                timeout=settings.timeout,
                on_started=redis_started,
            )
        self.save()
        self.printer.note(_describe_data_service(self.record.redis))

    async def _require_external_answers(self, recorded: DataServiceRecord | None) -> None:
        if recorded is None or recorded.embedded:
            return
        answers = postgres_answers if recorded.name == "postgres" else redis_answers
        if not await answers(recorded.url):
            raise DevStackError(
                f"{recorded.name} at {recorded.url}, which the running services use, does not"
                " answer: start it again, or `./backend.ai dev down` and `dev up`"
            )

    # --- services ------------------------------------------------------------------------

    def _endpoints(self) -> StackEndpoints:
        assert self.record.db is not None and self.record.redis is not None
        return StackEndpoints(
            db_url=self.record.db.url,
            redis_url=self.record.redis.url,
            redis_prefix=self.record.redis_prefix,
            manager_port=(
                self.record.services["manager"].port
                if "manager" in self.record.services
                else self.settings.manager_port
            ),
        )

    async def _check_running_healthy(self, alive: dict[str, ServiceRecord]) -> None:
        names = ", ".join(alive)
        with self.printer.step(f"{names}: already running, checking health", f"{names} healthy"):
            await asyncio.gather(
                *(
                    wait_until_healthy(self.http, service, timeout=self.settings.timeout)
                    for service in alive.values()
                )
            )

    async def _start_missing(self, missing: list[str]) -> None:
        endpoints = self._endpoints()
        manager_document = manager_config(endpoints)
        manager_file = self.paths.config_file("manager")
        write_config(manager_file, manager_document)
        drop = list(environment_keys(manager_document))
        if "manager" in missing:
            with self.printer.step("schema (mgr schema oneshot)"):
                await run_cli(
                    ["mgr", "schema", "oneshot", "--config", str(manager_file)], drop_env=drop
                )
        with self.printer.step("dev keypairs"):
            keypairs, created = await ensure_keypairs(
                self.record.keypairs, manager_file, drop_env=drop
            )
        self.record.keypairs = keypairs
        self.save()
        self.printer.note(
            f"created: {', '.join(created)}" if created else "reused the recorded keypairs"
        )
        if "manager" in missing:
            launch = Launch(
                self._service_record("manager", ServiceKind.MANAGER, self.settings.manager_port),
                manager_document,
            )
            await self._start_and_wait([launch])
        later = []
        if "gateway" in missing:
            later.append(self._gateway_launch(endpoints, keypairs["gateway"]))
        for index, name in enumerate(self.settings.agent_names(), start=1):
            if name in missing:
                later.append(self._agent_launch(endpoints, index, keypairs["agent"]))
        if later:
            await self._start_and_wait(later)

    def _service_record(
        self, name: str, kind: ServiceKind, port: int, **extra: Any
    ) -> ServiceRecord:
        return ServiceRecord(
            name=name,
            kind=kind,
            process=ProcessRecord(pid=0, start_time=0),  # set when it starts
            port=port,
            url=f"http://{HOST}:{port}",
            health_url=f"http://{HOST}:{port}/health",
            log=self.paths.log_file(name),
            config=self.paths.config_file(name),
            **extra,
        )

    def _gateway_launch(self, endpoints: StackEndpoints, keys: KeypairRecord) -> Launch:
        settings = self.settings
        record = self._service_record(
            "gateway", ServiceKind.GATEWAY, settings.gateway_port, grpc_port=settings.grpc_port
        )
        document = gateway_config(
            endpoints,
            port=settings.gateway_port,
            grpc_port=settings.grpc_port,
            tools_dir=self.paths.tools_dir,
            keys=keys,
        )
        return Launch(record, document)

    def _agent_launch(self, endpoints: StackEndpoints, index: int, keys: KeypairRecord) -> Launch:
        settings = self.settings
        # the manager binds an agent id to the first agent keypair it heartbeats with: the id
        # carries the tail of the key, so a new keypair (after a purge) gets fresh ids
        agent_id = f"dev-agent-{index}-{keys.access_key[-4:].lower()}"
        port = settings.agent_port + index - 1
        state_dir = self.paths.agent_state_dir(agent_id)
        record = self._service_record(
            settings.agent_name(index),
            ServiceKind.AGENT,
            port,
            agent_id=agent_id,
            state_dir=state_dir,
            mock_gpus=settings.mock_gpus,
        )
        document = agent_config(
            endpoints,
            agent_id=agent_id,
            port=port,
            state_dir=state_dir,
            mock_gpus=settings.mock_gpus,
            keys=keys,
        )
        return Launch(record, document)

    async def _start_and_wait(self, launches: list[Launch]) -> None:
        names = ", ".join(launch.record.name for launch in launches)
        ports = {launch.record.name: launch.record.port for launch in launches}
        for launch in launches:
            if launch.record.grpc_port is not None:
                ports[f"{launch.record.name} (gRPC)"] = launch.record.grpc_port
        check_ports_free(ports)  # again: something may have taken one since the first check
        with self.printer.step(f"starting {names}", f"{names} healthy"):
            started = []
            for launch in launches:
                started.append(launch.start())
                self.record.services[launch.record.name] = launch.record
            self.save()  # what started is recorded even if it fails: `dev down` stops it
            outcomes = await asyncio.gather(
                *(
                    wait_until_healthy(
                        self.http, launch.record, timeout=self.settings.timeout, started=process
                    )
                    for launch, process in zip(launches, started, strict=True)
                ),
                return_exceptions=True,
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                raise failures[0]

    # --- examples ------------------------------------------------------------------------

    def _install_tools(self) -> Examples:
        outcome = ExamplesOutcome()
        manifest = None
        if self.settings.examples is not None:
            manifest = read_manifest(self.settings.examples, outcome)
        if manifest is not None:
            install_tools(manifest, self.paths.tools_dir, outcome)
        return Examples(manifest, outcome)

    async def _apply_examples(self, examples: Examples, *, gateway_reused: bool) -> None:
        outcome = examples.outcome
        if examples.manifest is not None:
            manager = ManagerApi(
                self.http, self.record.services["manager"].url, self.record.keypairs["admin"]
            )
            with self.printer.step("example actors"):
                await apply_actors(manager, examples.manifest, outcome)
            if gateway_reused:
                await self._reload_gateway_tools(len(outcome.tools), outcome)
            self.printer.info(f"actors: {', '.join(outcome.applied) or '(none)'}")
            self.printer.info(f"tools: {', '.join(outcome.tools) or '(none)'}")
        for note in outcome.notes:
            self.printer.note(note)

    async def _reload_gateway_tools(self, expected: int, outcome: ExamplesOutcome) -> None:
        gateway = self.record.services["gateway"]
        if not signal_process(gateway.process, signal.SIGHUP):  # gone, or its pid reused
            outcome.notes.append(
                f"the gateway (pid {gateway.process.pid}) no longer runs: its tools were not"
                " reloaded; run `./backend.ai dev up` again"
            )
            return
        deadline = asyncio.get_running_loop().time() + TOOLS_RELOAD_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            answer = await probe(self.http, gateway.health_url)
            if isinstance(answer.body, dict) and answer.body.get("tools") == expected:
                return
            await asyncio.sleep(0.2)  # polling the gateway's reload
        outcome.notes.append(
            f"the gateway did not report {expected} tools after SIGHUP:"
            " see `./backend.ai dev logs --service gateway`"
        )


def _describe_data_service(record: DataServiceRecord) -> str:
    if record.embedded:
        return f"{record.name}: embedded ({record.server}) at {record.url}"
    return f"{record.name}: {record.url}"


async def bring_up(
    settings: UpSettings, paths: DevPaths, printer: StepPrinter
) -> tuple[StackRecord, ClientConfigWritten]:
    """Bring the stack up; the record of what runs and how the client config was written."""
    async with aiohttp.ClientSession() as http:
        return await StackStarter(settings, paths, printer, http).run()

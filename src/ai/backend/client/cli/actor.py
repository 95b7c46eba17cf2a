"""``backend.ai actor …``: deploy actors from spec files, see them, scale, delete, read logs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .base import EXIT_CODES_HELP, client_group, run_session
from .output import (
    EMPTY,
    age,
    json_option,
    print_fields,
    print_json,
    print_json_line,
    print_table,
    slots_text,
)
from .params import REPLICAS

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.client.dto import LogLine
    from ai.backend.common.dto.manager_api import ActorInfo, ActorSummary, ApplyResult


@client_group(epilog=EXIT_CODES_HELP)
def actor() -> None:
    """Actors: your handlers deployed as replicas on the agents.

    \b
    backend.ai actor apply -f doubler.yaml   # create or update from a spec file
    backend.ai actor ls                      # what runs, and how many replicas
    backend.ai actor get doubler             # its replicas, and why any is pending
    backend.ai actor scale doubler 3         # pin 3 replicas (`auto`: autoscale again)
    backend.ai actor logs doubler --follow   # its replicas' output
    backend.ai actor rm doubler
    """


def _apply_word(result: ApplyResult) -> str:
    if result.created:
        return "created"
    return "updated" if result.changed else "unchanged"


@actor.command("apply")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An actor spec (YAML or JSON); give -f several times to apply several actors.",
)
@json_option
def apply_actor(files: tuple[Path, ...], as_json: bool) -> None:
    """Create or update actors from spec files.

    An unchanged spec is left alone; a changed one gets a new generation and its replicas are
    replaced. A relative `pythonpath` in a file is taken relative to the file's folder.
    """

    async def work(session: AsyncSession) -> list[ApplyResult]:
        return [await session.actors.apply(path) for path in files]

    results = run_session(work)
    if as_json:
        print_json(results)
        return
    for result in results:
        click.echo(f"{result.name}: {_apply_word(result)} (generation {result.generation})")


def _scaling(summary: ActorSummary) -> str:
    if summary.pinned_replicas is None:
        return "auto"
    return f"pinned {summary.pinned_replicas}"


@actor.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include the platform's own actors.")
@json_option
def list_actors(show_all: bool, as_json: bool) -> None:
    """List actors and their replica counts.

    The platform's own actors (happy-end, error-end) are listed with --all.
    """

    async def work(session: AsyncSession) -> list[ActorSummary]:
        return list(await session.actors.list())

    actors = [a for a in run_session(work) if show_all or not a.is_system]
    if as_json:
        print_json(actors)
        return
    print_table(
        ["NAME", "STATUS", "RUNNING", "DESIRED", "SCALING", "GENERATION", "UPDATED"],
        (
            [
                a.name + (" (system)" if a.is_system else ""),
                a.status,
                a.running_replicas,
                a.desired_replicas,
                _scaling(a),
                a.generation,
                a.updated_at,
            ]
            for a in actors
        ),
        empty="no actors yet: deploy one with `backend.ai actor apply -f SPEC.yaml`",
    )


@actor.command("get")
@click.argument("name")
@json_option
def get_actor(name: str, as_json: bool) -> None:
    """Show an actor, its replicas and why any is pending.

    Shows its spec, its replicas (where they run, with which slots and devices), its queue
    depth and its recent scheduler events: the reason a replica is pending is there.
    """

    async def work(session: AsyncSession) -> ActorInfo:
        return await session.actors.get(name)

    info = run_session(work)
    if as_json:
        print_json(info)
        return
    spec = info.spec
    print_fields(
        [
            ("name", info.name + (" (system)" if info.is_system else "")),
            ("status", info.status),
            ("generation", info.generation),
            ("handler", spec.get("handler")),
            ("resources", slots_text(spec.get("resources") or {})),
            ("replicas", f"{info.running_replicas} running of {info.desired_replicas} desired"),
            ("scaling", _scaling(info)),
            ("queue depth", info.queue_depth),
            ("updated", f"{info.updated_at.isoformat()} ({age(info.updated_at)})"),
        ]
    )
    click.echo()
    print_table(
        ["REPLICA", "STATUS", "AGENT", "SLOTS", "DEVICES", "RESTARTS", "GENERATION", "INFO"],
        (
            [
                r.id,
                r.status,
                r.agent_id,
                slots_text(r.slots),
                ",".join(r.device_ids) or EMPTY,
                r.restarts,
                r.generation,
                r.status_info,
            ]
            for r in info.replicas
        ),
        empty="no replicas",
    )
    if info.events:
        click.echo()
        print_table(
            ["WHEN", "EVENT", "MESSAGE"],
            ([e.at, e.kind, e.message] for e in info.events),
        )


@actor.command("scale")
@click.argument("name")
@click.argument("replicas", type=REPLICAS)
@json_option
def scale_actor(name: str, replicas: int | str, as_json: bool) -> None:
    """Pin an actor's replica count, or autoscale it again.

    REPLICAS is a number (autoscaling stays off for the actor until the next `apply` or
    `scale NAME auto`) or `auto` (the autoscaler decides from the queue depth).
    """

    async def work(session: AsyncSession) -> ActorSummary:
        return await session.actors.scale(name, replicas)  # type: ignore[arg-type]

    summary = run_session(work)
    if as_json:
        print_json(summary)
        return
    if summary.pinned_replicas is None:
        click.echo(f"{summary.name}: back to autoscaling ({summary.running_replicas} running now)")
    else:
        click.echo(
            f"{summary.name}: pinned to {summary.pinned_replicas} replica(s)"
            f" ({summary.running_replicas} running); `scale {summary.name} auto` autoscales again"
        )


@actor.command("rm")
@click.argument("name")
@json_option
def delete_actor(name: str, as_json: bool) -> None:
    """Delete an actor and stop its replicas.

    In-flight calls get the actor's timeout to finish; its models leave the registry.
    """

    async def work(session: AsyncSession) -> ActorSummary:
        return await session.actors.delete(name)

    summary = run_session(work)
    if as_json:
        print_json(summary)
        return
    click.echo(f"{summary.name}: deleted (its replicas are stopping)")


def _log_prefix(line: LogLine) -> str:
    return f"[{line.replica_id} {line.process}]"


@actor.command("logs")
@click.argument("name")
@click.option(
    "--replica",
    default=None,
    metavar="ID",
    help="Only this replica (its id as `actor get` shows it, or the start of it).",
)
@click.option(
    "--process",
    type=click.Choice(["runtime", "sidecar", "all"]),
    default="all",
    show_default=True,
    help="runtime: your handler's output; sidecar: the message router's.",
)
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How many recent lines of each log to start with.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def actor_logs(
    name: str, replica: str | None, process: str, tail: int, follow: bool, as_json: bool
) -> None:
    """Print the logs of an actor's replicas.

    Each line is prefixed with [REPLICA PROCESS]: the replica's id and `runtime` (your
    handler's output) or `sidecar` (the message router).
    """

    async def work(session: AsyncSession) -> None:
        lines = session.actors.logs(
            name, replica=replica, process=process, tail=tail, follow=follow
        )
        async for line in lines:
            if as_json:
                print_json_line(line)
            else:
                click.echo(f"{_log_prefix(line)} {line.line}")

    try:
        run_session(work)
    except KeyboardInterrupt:
        if not follow:
            raise  # Ctrl-C while following is how one stops; elsewhere it is an interruption

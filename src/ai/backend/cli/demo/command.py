"""``./backend.ai demo``: the platform's main job on this machine. Brings the dev stack up when
nothing answers (``dev up``: services, schema, example actors and tools), then runs each
scenario of :mod:`.scenarios` through the real services, prints what happened with timings, and
leaves the stack running (``./backend.ai dev down`` stops it)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Final

import click
from rich.console import Console
from rich.table import Table

from ai.backend.client import AsyncSession
from ai.backend.client.exceptions import BackendClientError

from .scenarios import DEMO_ACTORS, ECHO_MODEL, GPU_ACTOR, SCENARIOS, ScenarioOutcome

READY_TIMEOUT: Final = 180.0


async def _wait_ready(session: AsyncSession, console: Console) -> None:
    """Until every actor the demo calls has a running replica and the echo model is known."""
    wanted = {*DEMO_ACTORS, GPU_ACTOR}
    deadline = time.monotonic() + READY_TIMEOUT
    missing: set[str] = set(wanted)
    with console.status("waiting for the example actors' replicas") as status:
        while True:
            actors = {a.name: a for a in await session.actors.list()}
            missing = {n for n in wanted if n not in actors or actors[n].running_replicas < 1}
            models = {m.name for m in await session.models.list()}
            if not missing and ECHO_MODEL in models:
                return
            if time.monotonic() > deadline:
                break
            status.update(
                f"waiting for running replicas of {', '.join(sorted(missing)) or 'models'}"
            )
            await asyncio.sleep(0.5)  # polling a user-facing status, not synchronising state
    raise click.ClickException(
        f"after {READY_TIMEOUT:.0f} s these actors have no running replica: "
        f"{', '.join(sorted(missing)) or '(none)'}; model {ECHO_MODEL!r} registered: "
        f"{ECHO_MODEL in models}. See `./backend.ai dev status` and `./backend.ai dev logs`."
    )


async def _run(console: Console, agents: int, mock_gpus: int) -> list[ScenarioOutcome]:
    outcomes: list[ScenarioOutcome] = []
    # `dev up` first when nothing answers at a local endpoint (its progress goes to stderr);
    # a remote endpoint that does not answer is an error, never a reason to start a stack here
    async with AsyncSession.start(agents=agents, mock_gpus=mock_gpus) as session:
        await _wait_ready(session, console)
        for title, scenario in SCENARIOS:
            console.rule(title)
            started = time.perf_counter()
            try:
                detail, ok = await scenario(session, console), True
            except Exception as error:  # a failed scenario is shown, and the tour goes on
                detail, ok = f"{type(error).__name__}: {error}", False
                console.print(f"  [red]{detail}[/]")
            outcomes.append(ScenarioOutcome(title, ok, time.perf_counter() - started, detail))
    return outcomes


def _table(outcomes: list[ScenarioOutcome], total: float) -> Table:
    table = Table(title=f"Backend.AI Actors demo ({total:.1f} s)")
    table.add_column("scenario")
    table.add_column("ok")
    table.add_column("time", justify="right")
    table.add_column("what happened")
    for item in outcomes:
        mark = "[green]✓[/]" if item.ok else "[red]✗[/]"
        table.add_row(item.title, mark, f"{item.seconds * 1000:.0f} ms", item.detail)
    return table


@click.command()
@click.option("--agents", default=1, show_default=True, help="agents `dev up` starts")
@click.option("--mock-gpus", default=2, show_default=True, help="mock GPUs per agent")
@click.option("--json", "as_json", is_flag=True, help="print the outcomes as JSON")
def demo(agents: int, mock_gpus: int, as_json: bool) -> None:
    """Run the platform's tour on this machine: a pipeline, a fan-out with fan-in, streamed
    partials, a GPU actor on mock GPUs, KServe inference and an MCP tool call with progress.
    Brings the dev stack up first when it is not running, and leaves it running."""
    console = Console(stderr=as_json)
    started = time.perf_counter()
    try:
        outcomes = asyncio.run(_run(console, agents, mock_gpus))
    except BackendClientError as error:  # unreachable, refused, dev up failed: one clear line
        raise click.ClickException(str(error)) from None
    total = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps([item.__dict__ for item in outcomes], indent=2))
    else:
        console.print(_table(outcomes, total))
        console.print(
            "The stack keeps running: `./backend.ai dev status`, `./backend.ai job ls`,"
            " `./backend.ai dev down` to stop it."
        )
    if not all(item.ok for item in outcomes):
        sys.exit(1)

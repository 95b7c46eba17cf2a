"""``backend.ai agent …``: the nodes that run replicas, their slots and devices."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ai.backend.common.types.units import format_size

from .base import EXIT_CODES_HELP, client_group, run_session
from .output import (
    EMPTY,
    age,
    json_option,
    print_fields,
    print_json,
    print_table,
    slots_text,
    usage_text,
)

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.common.dto.manager_api import AgentInfo

GPU_SLOTS = ("cuda.device", "cuda.shares")


@client_group(epilog=EXIT_CODES_HELP)
def agent() -> None:
    """Agents: the nodes that run replicas (slots used/total, GPUs, replicas).

    \b
    backend.ai agent ls
    backend.ai agent get node-1
    """


def _gpus(info: AgentInfo) -> str:
    if not info.devices:
        return EMPTY
    models = sorted({device.model for device in info.devices})
    return f"{len(info.devices)}× {', '.join(models)}"


@agent.command("ls")
@json_option
def list_agents(as_json: bool) -> None:
    """List agents and what they have in use.

    Status, address, CPU and memory used/total, GPUs, replicas and the last heartbeat.
    """

    async def work(session: AsyncSession) -> list[AgentInfo]:
        return list(await session.agents.list())

    agents = run_session(work)
    if as_json:
        print_json(agents)
        return
    print_table(
        ["ID", "STATUS", "ADDRESS", "CPU", "MEM", "GPUS", "REPLICAS", "HEARTBEAT"],
        (
            [
                a.id,
                a.status,
                a.addr,
                usage_text(a.slots_used, a.slots_total, "cpu"),
                usage_text(a.slots_used, a.slots_total, "mem"),
                _gpus(a),
                len(a.replicas),
                a.last_heartbeat,
            ]
            for a in agents
        ),
        empty="no agents have registered yet (start one with `backend.ai ag start-server`)",
    )


@agent.command("get")
@click.argument("agent_id", metavar="ID")
@json_option
def get_agent(agent_id: str, as_json: bool) -> None:
    """Show an agent's slots, devices and replicas.

    Every resource slot used/total, its GPUs (model, memory) and the replicas placed on it.
    """

    async def work(session: AsyncSession) -> AgentInfo:
        return await session.agents.get(agent_id)

    info = run_session(work)
    if as_json:
        print_json(info)
        return
    print_fields(
        [
            ("id", info.id),
            ("status", info.status),
            ("address", info.addr),
            ("version", info.version),
            ("labels", " ".join(f"{k}={v}" for k, v in sorted(info.labels.items())) or EMPTY),
            ("heartbeat", f"{info.last_heartbeat.isoformat()} ({age(info.last_heartbeat)})"),
            ("since", info.first_contact.isoformat()),
        ]
    )
    click.echo()
    print_table(
        ["SLOT", "USED", "TOTAL"],
        (
            [name, *usage_text(info.slots_used, info.slots_total, name).split("/")]
            for name in sorted(info.slots_total)
            if info.slots_total.get(name)
        ),
    )
    if info.devices:
        click.echo()
        print_table(
            ["DEVICE", "KIND", "MODEL", "MEMORY", "UUID"],
            ([d.id, d.kind, d.model, format_size(d.memory), d.uuid] for d in info.devices),
        )
    click.echo()
    print_table(
        ["REPLICA", "ACTOR", "STATUS", "SLOTS", "DEVICES"],
        (
            [r.id, r.actor_name, r.status, slots_text(r.slots), ",".join(r.device_ids) or EMPTY]
            for r in info.replicas
        ),
        empty="no replicas on this agent",
    )

"""What ``dev up`` prints at the end: where everything answers, and what to run next."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .configs import HOST
from .record import StackRecord

NEXT_COMMANDS = (
    ("./backend.ai demo", "the tour: pipelines, fan-out, streaming, GPUs, KServe, MCP"),
    ("./backend.ai actor ls", "the actors and their replicas"),
    ("./backend.ai job run echo --arg message=hello", "a job through the gateway"),
    ("./backend.ai dev status", "services, health, actors"),
    ("./backend.ai dev logs --follow", "every service's log"),
    ("./backend.ai dev down", "stop it all (data kept; --purge deletes it)"),
)


def endpoints(record: StackRecord) -> dict[str, str]:
    """The URLs a user calls, by what they are."""
    manager = record.services["manager"]
    gateway = record.services["gateway"]
    urls = {
        "REST (manager)": manager.url,
        "REST (jobs, tools)": f"{gateway.url}/v1",
        "MCP": f"{gateway.url}/mcp",
        "KServe v2": f"{gateway.url}/v2",
        "gRPC (KServe)": f"{HOST}:{gateway.grpc_port}",
        "metrics (manager)": f"{manager.url}/metrics",
        "metrics (gateway)": f"{gateway.url}/metrics",
    }
    for agent in record.agents():
        urls[f"metrics ({agent.name})"] = f"{agent.url}/metrics"
    return urls


def print_summary(console: Console, record: StackRecord, client_config: Path) -> None:
    table = Table(title="Backend.AI dev stack", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, url in endpoints(record).items():
        table.add_row(name, url)
    table.add_row("client config", str(client_config))
    table.add_row("state", str(record.state_dir))
    console.print(table)
    console.print("Next:")
    for command, what in NEXT_COMMANDS:
        console.print(f"  [bold]{escape(command)}[/]  [dim]# {escape(what)}[/]")

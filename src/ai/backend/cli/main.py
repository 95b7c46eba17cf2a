"""``./backend.ai``: one command line for every package, each group imported only when used."""

from __future__ import annotations

import click

from ai.backend.common import __version__
from ai.backend.common.cli.debug import DEBUG_META_KEY
from ai.backend.common.cli.lazy_group import LazyCommand, LazyGroup

COMMAND_GROUPS = {
    "mgr": LazyCommand("ai.backend.manager.cli:main", "Manager: control plane and database."),
    "ag": LazyCommand("ai.backend.agent.cli:main", "Agent: runs replicas on this node."),
    "gw": LazyCommand("ai.backend.gateway.cli:main", "Gateway: MCP, jobs REST + SSE, KServe v2."),
    "sidecar": LazyCommand("ai.backend.sidecar.cli:main", "Sidecar: per-replica message router."),
    "runtime": LazyCommand("ai.backend.runtime.cli:main", "Runtime: serves a user handler."),
    "demo": LazyCommand(
        "ai.backend.cli.demo.command:demo", "The tour: brings the dev stack up and runs examples."
    ),
    "dev": LazyCommand("ai.backend.cli.dev:main", "Dev stack: up, status, logs, down."),
    "actor": LazyCommand(
        "ai.backend.client.cli.actor:actor", "Actors: apply specs, list, scale, delete, logs."
    ),
    "agent": LazyCommand("ai.backend.client.cli.agent:agent", "Agents: nodes, slots, GPUs."),
    "job": LazyCommand(
        "ai.backend.client.cli.job:job", "Jobs: run a tool, follow it live, list, cancel."
    ),
    "tool": LazyCommand("ai.backend.client.cli.tool:tool", "Tools: what `job run` can call."),
    "model": LazyCommand(
        "ai.backend.client.cli.model:model", "Models: the KServe registry and inference."
    ),
    "admin": LazyCommand(
        "ai.backend.client.cli.admin:admin", "Admin: keypairs and gateway API tokens."
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMAND_GROUPS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="backend.ai")
@click.option(
    "--debug",
    is_flag=True,
    envvar="BACKEND_DEBUG",
    help="On an error, show the traceback too (also BACKEND_DEBUG=1).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Backend.AI Actors: GPU-aware async AI actors, pipelines, MCP tools and KServe inference."""
    if debug:  # read by the user commands (ai.backend.client.cli.base)
        ctx.meta[DEBUG_META_KEY] = True


if __name__ == "__main__":
    main()

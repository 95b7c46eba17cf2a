"""``./backend.ai``: one command line for every package, each group imported only when used."""

from __future__ import annotations

import click

from ai.backend.common import __version__
from ai.backend.common.cli.lazy_group import LazyCommand, LazyGroup

COMMAND_GROUPS = {
    "mgr": LazyCommand("ai.backend.manager.cli:main", "Manager: control plane and database."),
    "ag": LazyCommand("ai.backend.agent.cli:main", "Agent: runs replicas on this node."),
    "gw": LazyCommand("ai.backend.gateway.cli:main", "Gateway: MCP, jobs REST + SSE, KServe v2."),
    "sidecar": LazyCommand("ai.backend.sidecar.cli:main", "Sidecar: per-replica message router."),
    "runtime": LazyCommand("ai.backend.runtime.cli:main", "Runtime: serves a user handler."),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMAND_GROUPS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="backend.ai")
def main() -> None:
    """Backend.AI Actors: GPU-aware async AI actors, pipelines, MCP tools and KServe inference."""


if __name__ == "__main__":
    main()

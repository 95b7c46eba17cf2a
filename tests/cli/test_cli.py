"""The ``./backend.ai`` command line, run as a user runs it (a child process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ai.backend.agent.cli
import ai.backend.cli.__main__  # noqa: F401  (the entry point the child processes run)
import ai.backend.gateway.cli
import ai.backend.manager.cli
import ai.backend.runtime.cli
import ai.backend.sidecar.cli  # noqa: F401
from ai.backend.cli.main import main
from ai.backend.common import __version__
from ai.backend.common.db.engine import database_exists
from ai.backend.testutils.spawn import run_module

# no manager.toml or other config file may leak in from the developer's machine
CLEAN_ENV = {"HOME": "/nonexistent-home"}
ENTRY = "ai.backend.cli"


def test_root_help_lists_every_group() -> None:
    result = run_module(ENTRY, ["--help"], env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: backend.ai [OPTIONS] COMMAND [ARGS]...")
    commands = result.stdout.split("Commands:")[1].split()
    assert [word for word in commands if word in {"ag", "gw", "mgr", "runtime", "sidecar"}] == [
        "ag",
        "gw",
        "mgr",
        "runtime",
        "sidecar",
    ]


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["mgr", "--help"], "Usage: backend.ai mgr [OPTIONS] COMMAND [ARGS]..."),
        (["ag", "--help"], "Usage: backend.ai ag [OPTIONS] COMMAND [ARGS]..."),
        (["gw", "config", "--help"], "Usage: backend.ai gw config [OPTIONS] COMMAND [ARGS]..."),
        (["sidecar", "config", "show", "--help"], "Usage: backend.ai sidecar config show"),
        (["runtime", "--help"], "Usage: backend.ai runtime [OPTIONS] COMMAND [ARGS]..."),
        (["mgr", "schema", "oneshot", "--help"], "Usage: backend.ai mgr schema oneshot"),
    ],
)
def test_every_group_has_help(args: list[str], usage: str) -> None:
    result = CliRunner().invoke(main, args, prog_name="backend.ai")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(usage)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"], prog_name="backend.ai")
    assert result.output == f"backend.ai, version {__version__}\n"


def test_unknown_group_is_an_error() -> None:
    result = CliRunner().invoke(main, ["nope"], prog_name="backend.ai")
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.output


def test_config_show_reports_the_environment_as_source() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/other"
    result = run_module(
        ENTRY,
        ["mgr", "config", "show"],
        env={**CLEAN_ENV, "BACKEND_DB__URL": url, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if " db.url " in line]
    cells = [cell.strip() for cell in row.strip().strip("│").split("│")]
    assert cells == ["db.url", url, "env", "BACKEND_DB__URL"]


@pytest.mark.parametrize("group", ["mgr", "ag", "gw", "sidecar"])
def test_config_show_json_masks_secrets(group: str) -> None:
    result = CliRunner().invoke(
        main,
        [group, "config", "show", "--format", "json"],
        env={**CLEAN_ENV, "BACKEND_REDIS__URL": "redis://:hunter2@127.0.0.1:6379/0"},
        prog_name="backend.ai",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    values = {v["key"]: v for v in shown["values"]}
    assert values["redis.url"] == {
        "key": "redis.url",
        "value": "redis://:***@127.0.0.1:6379/0",
        "source": "env",
        "origin": "BACKEND_REDIS__URL",
    }
    assert "hunter2" not in result.output


def test_config_show_rejects_a_bad_value() -> None:
    result = CliRunner().invoke(
        main,
        ["mgr", "config", "show"],
        env={**CLEAN_ENV, "BACKEND_API__PORT": "http"},
        prog_name="backend.ai",
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: invalid manager configuration: api.port (from BACKEND_API__PORT): "
    )


async def test_schema_oneshot_twice_then_status(missing_database_url: str) -> None:
    env = {**CLEAN_ENV, "BACKEND_DB__URL": missing_database_url}
    database = missing_database_url.rsplit("/", 1)[1]

    first = run_module(ENTRY, ["mgr", "schema", "oneshot"], env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"database {database}: created"
    assert lines[1].startswith("schema: upgraded (empty) -> ")
    head = lines[1].rsplit(" ", 1)[1]

    second = run_module(ENTRY, ["mgr", "schema", "oneshot"], env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"database {database}: exists",
        f"schema: already at head {head}",
    ]
    assert await database_exists(missing_database_url)

    state = run_module(ENTRY, ["mgr", "schema", "status", "--check"], env=env)
    assert state.returncode == 0, state.stderr
    assert state.stdout.splitlines() == [
        f"database: {database} (exists)",
        f"current revision: {head}",
        f"head revision: {head}",
        "up to date: yes",
        "tables: actors, agents, alembic_version, api_tokens, job_events, jobs, keypairs, models,"
        " replicas, scheduler_events",
    ]


def test_schema_status_check_fails_on_a_missing_database() -> None:
    env = {
        **CLEAN_ENV,
        "BACKEND_DB__URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test_bai_never_created",
    }
    result = run_module(ENTRY, ["mgr", "schema", "status", "--check"], env=env)
    assert result.returncode == 1
    assert "database: test_bai_never_created (missing)" in result.stdout
    assert "up to date: no" in result.stdout


def test_schema_oneshot_reports_an_unreachable_database() -> None:
    env = {**CLEAN_ENV, "BACKEND_DB__URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x"}
    result = run_module(ENTRY, ["mgr", "schema", "oneshot"], env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: cannot migrate postgresql+asyncpg://postgres@127.0.0.1:1/x: "
    )


@pytest.mark.parametrize(
    ("args", "config", "status", "message"),
    [
        (
            ["--actor", "Bad_Name", "--socket", "/tmp/x.sock"],
            None,
            2,
            "invalid actor name 'Bad_Name'",
        ),
        (["--actor", "doubler"], None, 2, "actor doubler needs --socket (the runtime's socket)"),
        (
            ["--actor", "doubler", "--socket", "/tmp/x.sock"],
            '[actor]\nname = "other"\nhandler = "a:b"\n',
            2,
            "the actor's spec is for 'other', not 'doubler'",
        ),
        (
            ["--actor", "doubler", "--socket", "/tmp/x.sock"],
            '[actor]\nname = "doubler"\nhandler = "a:b"\nconcurrency = 0\n',
            1,
            "actor.concurrency (from ",
        ),
    ],
)
def test_sidecar_run_rejects_bad_arguments(
    tmp_path: Path, args: list[str], config: str | None, status: int, message: str
) -> None:
    if config is not None:
        path = tmp_path / "sidecar.toml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    result = CliRunner().invoke(
        main, ["sidecar", "run", *args], env=CLEAN_ENV, prog_name="backend.ai"
    )
    assert result.exit_code == status, result.output
    assert message in result.output


INPROCESS_SPEC = "name: doubler\nhandler: examples.pipeline:double\nexecution: inprocess\n"


@pytest.mark.parametrize(
    ("args", "spec", "status", "message"),
    [
        (
            ["--socket", "/tmp/x.sock"],
            INPROCESS_SPEC,
            2,
            "actor doubler runs in-process (execution: inprocess): no --socket",
        ),
        (
            [],
            INPROCESS_SPEC.replace("examples.pipeline", "examples.nowhere"),
            3,
            "sidecar: cannot import 'examples.nowhere'",
        ),
        (
            [],
            INPROCESS_SPEC + "python: /opt/venv/bin/python\n",
            2,
            "python: an in-process actor runs in the sidecar's interpreter",
        ),
        ([], INPROCESS_SPEC + "execution: elsewhere\n", 2, "execution: Input should be"),
        ([], "name: doubler\nhandler: [1\n", 2, "invalid YAML"),
    ],
)
def test_sidecar_run_rejects_bad_in_process_specs(
    tmp_path: Path, args: list[str], spec: str, status: int, message: str
) -> None:
    path = tmp_path / "doubler.yaml"
    path.write_text(spec)
    result = CliRunner().invoke(
        main,
        ["sidecar", "run", "--actor", "doubler", "--spec", str(path), *args],
        env=CLEAN_ENV,
        prog_name="backend.ai",
    )
    assert result.exit_code == status, result.output
    assert message in result.output


def test_runtime_run_rejects_a_bad_frame_size() -> None:
    result = CliRunner().invoke(
        main,
        ["runtime", "run", "--handler", "a:b", "--socket", "/tmp/x.sock", "--max-frame", "12q"],
        prog_name="backend.ai",
    )
    assert result.exit_code == 2
    assert "Invalid value for --max-frame: invalid size '12q'" in result.output

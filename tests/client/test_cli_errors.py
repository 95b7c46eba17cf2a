"""The user CLI without a platform: help for every command, usage errors (exit 2), a server
that does not answer (exit 3), one-line errors and ``--debug``; partly as child processes, as
a user runs ``./backend.ai``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import ai.backend.cli.__main__  # noqa: F401  (the entry point the child processes run)
import ai.backend.client.cli.actor
import ai.backend.client.cli.admin
import ai.backend.client.cli.agent
import ai.backend.client.cli.job
import ai.backend.client.cli.model
import ai.backend.client.cli.tool  # noqa: F401  (imported lazily by the entry point)
from ai.backend.cli.main import main
from ai.backend.testutils.services import free_port
from ai.backend.testutils.spawn import run_module

ENTRY = "ai.backend.cli"

COMMANDS = [
    ["actor", "apply"],
    ["actor", "ls"],
    ["actor", "get"],
    ["actor", "scale"],
    ["actor", "rm"],
    ["actor", "logs"],
    ["agent", "ls"],
    ["agent", "get"],
    ["job", "run"],
    ["job", "ls"],
    ["job", "get"],
    ["job", "cancel"],
    ["job", "events"],
    ["tool", "ls"],
    ["model", "ls"],
    ["model", "infer"],
    ["admin", "keypair", "create"],
    ["admin", "keypair", "ls"],
    ["admin", "keypair", "rm"],
    ["admin", "token", "create"],
    ["admin", "token", "ls"],
    ["admin", "token", "rm"],
]


@pytest.fixture
def nowhere(tmp_path: Path) -> dict[str, str]:
    """A client configuration that points at ports where nothing listens (and no
    ``client.toml`` of the developer's machine)."""
    return {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "BACKEND_CLIENT_CONFIG": str(tmp_path / "client.toml"),
        "BACKEND_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "BACKEND_GATEWAY_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "BACKEND_ACCESS_KEY": "AKIATESTTESTTESTTEST",
        "BACKEND_SECRET_KEY": "secret",
        "BACKEND_DEBUG": "",
    }


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="backend.ai")
    assert result.exit_code == 0, result.output
    usage, _, rest = result.output.partition("\n\n")
    assert usage.startswith(f"Usage: backend.ai {' '.join(command)} [OPTIONS]")
    summary = rest.splitlines()[0].strip()
    assert summary.endswith("."), summary  # one sentence that fits the line
    assert "--debug" in result.output
    if command[-1] in ("ls", "get"):
        assert "--json" in result.output


@pytest.mark.parametrize(
    "group",
    [["actor"], ["agent"], ["job"], ["tool"], ["model"], ["admin", "keypair"]],
    ids=" ".join,
)
def test_a_group_lists_each_command_with_a_whole_sentence(group: list[str]) -> None:
    result = CliRunner().invoke(main, [*group, "--help"], prog_name="backend.ai")
    listing = result.output.split("Commands:\n")[1].split("\n\n")[0].splitlines()
    assert listing and all(line.endswith(".") for line in listing), listing


def test_groups_list_their_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(main, ["job", "--help"], prog_name="backend.ai")
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].split("Exit codes:")[0]
    assert [line.split()[0] for line in commands.strip().splitlines()] == [
        "cancel",
        "events",
        "get",
        "ls",
        "run",
    ]
    assert " ".join(result.output.split("Exit codes:")[1].split()) == (
        "0 done; 1 the job failed or was cancelled, or the server refused the request;"
        " 2 usage error; 3 the server cannot be reached."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["job", "run", "double", "--arg", "value"],
            "Invalid value for '--arg': expected KEY=VALUE, got 'value'",
        ),
        (
            ["job", "run", "double", "--json-args", "[1]"],
            "Invalid value for '--json-args': expected a JSON object ({...}), got list",
        ),
        (
            ["job", "run", "double", "--timeout", "soon"],
            "Invalid value for '--timeout': invalid duration 'soon': expected e.g. 500ms, 30s, 5m,"
            " 1h30m or seconds",
        ),
        (
            ["job", "ls", "--status", "done"],
            "Invalid value for '--status': 'done' is not one of 'pending', 'running', 'succeeded',"
            " 'failed', 'cancelled'.",
        ),
        (
            ["actor", "scale", "doubler", "many"],
            "Invalid value for 'REPLICAS': expected a number of replicas or 'auto', got 'many'",
        ),
        (["actor", "apply"], "Missing option '-f' / '--file'."),
        (
            ["actor", "apply", "-f", "/nonexistent/spec.yaml"],
            "Invalid value for '-f' / '--file': File '/nonexistent/spec.yaml' does not exist.",
        ),
        (
            ["model", "infer", "echo"],
            "give the inputs with --input (one or more) or with --json-body",
        ),
        (
            ["model", "infer", "echo", "--input", "x:FP32:2:[1]"],
            "Invalid value for '-i' / '--input': data of 'x': shape [2] holds 2 element(s), got 1",
        ),
        (["actor", "nope"], "No such command 'nope'."),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(
    nowhere: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, args, env=nowhere, prog_name="backend.ai")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"Error: {message}"


def test_a_server_that_does_not_answer_exits_3(nowhere: dict[str, str]) -> None:
    manager, gateway = nowhere["BACKEND_ENDPOINT"], nowhere["BACKEND_GATEWAY_ENDPOINT"]
    hint = (
        "is the platform running? (start it with `backend.ai dev up`, or set BACKEND_ENDPOINT /"
        " BACKEND_GATEWAY_ENDPOINT)"
    )
    for args, url in [
        (["actor", "ls"], manager),
        (["agent", "get", "node-1", "--json"], manager),
        (["admin", "keypair", "ls"], manager),
        (["job", "ls"], gateway),
        (["job", "run", "double", "--arg", "value=1", "--follow"], gateway),
        (["tool", "ls", "--json"], gateway),
        (["model", "infer", "echo", "--input", "x:FP32:1:[1]"], gateway),
    ]:
        result = CliRunner().invoke(main, args, env=nowhere, prog_name="backend.ai")
        assert (result.exit_code, result.stdout) == (3, ""), (args, result.output)
        assert result.stderr == f"error: cannot reach {url} (connection refused); {hint}\n"


def test_as_a_process_usage_is_2_unreachable_is_3_and_debug_shows_the_traceback(
    nowhere: dict[str, str],
) -> None:
    usage = run_module(ENTRY, ["job", "run"], env=nowhere)
    assert usage.returncode == 2
    assert usage.stderr.splitlines()[-1] == "Error: Missing argument 'TOOL'."

    unreachable = run_module(ENTRY, ["actor", "ls"], env=nowhere)
    assert (unreachable.returncode, unreachable.stdout) == (3, "")
    assert unreachable.stderr.startswith(f"error: cannot reach {nowhere['BACKEND_ENDPOINT']} ")
    assert len(unreachable.stderr.splitlines()) == 1

    debug = run_module(ENTRY, ["actor", "ls", "--debug"], env=nowhere)
    assert debug.returncode == 3
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "ai.backend.client.exceptions.ServerUnreachable: cannot reach" in debug.stderr
    assert debug.stderr.splitlines()[-1] == unreachable.stderr.strip()

    by_env = run_module(ENTRY, ["agent", "ls"], env={**nowhere, "BACKEND_DEBUG": "1"})
    assert by_env.returncode == 3 and by_env.stderr.startswith("Traceback")


def test_a_bad_client_config_is_one_line(nowhere: dict[str, str]) -> None:
    env = {**nowhere, "BACKEND_ENDPOINT": "ftp://example.com"}
    result = CliRunner().invoke(main, ["actor", "ls"], env=env, prog_name="backend.ai")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: invalid client configuration: endpoint (from BACKEND_ENDPOINT): expected an"
        " http(s) URL like http://127.0.0.1:8081, got 'ftp://example.com'\n"
    )

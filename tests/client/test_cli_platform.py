"""Every user command (``actor``, ``agent``, ``admin``, ``job``, ``tool``, ``model``) through
click's runner against real processes: a manager, an agent running real actors and a gateway,
the CLI configured by environment variables with an HMAC keypair, as a user would. Each test
starts one stack and runs many commands on it (stack start-ups are what costs time)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import examples.failures  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.kserve_echo  # noqa: F401
import examples.pipeline  # noqa: F401
import examples.streaming  # noqa: F401
import yaml
from click.testing import CliRunner, Result

import ai.backend.cli.__main__  # noqa: F401  (the entry point the child processes run)
import ai.backend.client.cli.actor
import ai.backend.client.cli.admin
import ai.backend.client.cli.agent
import ai.backend.client.cli.job
import ai.backend.client.cli.model
import ai.backend.client.cli.tool  # noqa: F401  (imported lazily by the entry point)
from ai.backend.cli.main import main
from ai.backend.client.cli.output import usage_text
from ai.backend.testutils.control_plane import Cluster, Keypair, SignedClient, insert_keypair
from ai.backend.testutils.gateway import (
    TEST_TOOLS,
    RunningGateway,
    deploy,
    gateway_for,
    write_tools,
)
from ai.backend.testutils.spawn import run_module
from ai.backend.testutils.waiting import wait_until

HANDLERS_ROOT = str(Path.cwd())  # where `examples` is importable (the sandbox root)


@dataclass
class CliUser:
    """Runs ``backend.ai …`` in-process with this user's environment."""

    env: dict[str, str]

    async def run(self, *args: str, exit_code: int | None = 0) -> Result:
        """The command's result, asserting its exit code (unless ``exit_code`` is None)."""
        result = await asyncio.to_thread(
            CliRunner().invoke, main, list(args), env=self.env, prog_name="backend.ai"
        )
        if exit_code is not None:
            assert result.exit_code == exit_code, (args, result.stdout, result.stderr)
        return result

    async def json(self, *args: str, exit_code: int = 0) -> Any:
        return json.loads((await self.run(*args, "--json", exit_code=exit_code)).stdout)

    async def json_lines(self, *args: str) -> list[Any]:
        return [json.loads(line) for line in (await self.run(*args, "--json")).stdout.splitlines()]

    def as_keypair(self, keys: Keypair) -> CliUser:
        return CliUser(
            {
                **self.env,
                "BACKEND_ACCESS_KEY": keys.access_key,
                "BACKEND_SECRET_KEY": keys.secret_key,
            }
        )


def cli_user(
    tmp_path: Path, keys: Keypair, manager: str, gateway: str = "http://127.0.0.1:1"
) -> CliUser:
    return CliUser(
        {
            "HOME": str(tmp_path),
            "BACKEND_CLIENT_CONFIG": str(tmp_path / "no-client.toml"),
            "BACKEND_ENDPOINT": manager,
            "BACKEND_GATEWAY_ENDPOINT": gateway,
            "BACKEND_ACCESS_KEY": keys.access_key,
            "BACKEND_SECRET_KEY": keys.secret_key,
            "BACKEND_DEBUG": "",
        }
    )


def write_spec(path: Path, **spec: Any) -> Path:
    path.write_text(yaml.safe_dump({"pythonpath": [HANDLERS_ROOT], "timeout": "10s", **spec}))
    return path


def table_rows(text: str) -> list[list[str]]:
    """A rich table as printed to a pipe: its rows split into cells."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


async def test_actor_agent_and_admin_commands(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.add_agent("node-1", labels=(("zone", "a"),))
    user_keys = await insert_keypair(cluster.manager.database_url, "user")
    user = cli_user(tmp_path, user_keys, cluster.manager.endpoint)
    admin = user.as_keypair(cluster.manager.admin)
    doubler = write_spec(
        tmp_path / "doubler.yaml", name="doubler", handler="examples.pipeline:double"
    )
    incrementer = write_spec(
        tmp_path / "incrementer.yaml", name="incrementer", handler="examples.pipeline:increment"
    )

    # apply: created, unchanged, updated
    applied = await user.run("actor", "apply", "-f", str(doubler), "-f", str(incrementer))
    assert applied.stdout == (
        "doubler: created (generation 1)\nincrementer: created (generation 1)\n"
    )
    assert await user.json("actor", "apply", "-f", str(doubler)) == [
        {"name": "doubler", "generation": 1, "created": False, "changed": False}
    ]
    write_spec(doubler, name="doubler", handler="examples.pipeline:double", concurrency=2)
    applied = await user.run("actor", "apply", "-f", str(doubler))
    assert applied.stdout == "doubler: updated (generation 2)\n"
    [replica] = await cluster.running_replicas("doubler", 1, generation=2)

    async def only_generation_2() -> bool:
        return len((await cluster.actor("doubler"))["replicas"]) == 1

    await wait_until(only_generation_2, what="doubler's first replica to go", timeout=30)
    await cluster.running_replicas("incrementer", 1)

    # ls / get: exactly what the API says
    actors = await user.json("actor", "ls")
    assert [(a["name"], a["generation"], a["is_system"], a["pinned_replicas"]) for a in actors] == [
        ("doubler", 2, False, None),
        ("incrementer", 1, False, None),
    ]
    everything = await user.json("actor", "ls", "--all")
    assert {a["name"] for a in everything} == {"doubler", "incrementer", "happy-end", "error-end"}
    listing = table_rows((await user.run("actor", "ls")).stdout)
    assert listing[0] == [
        "NAME",
        "STATUS",
        "RUNNING",
        "DESIRED",
        "SCALING",
        "GENERATION",
        "UPDATED",
    ]
    assert [row[:6] for row in listing[1:]] == [
        ["doubler", "active", "1", "1", "auto", "2"],
        ["incrementer", "active", "1", "1", "auto", "1"],
    ]
    shown = await user.json("actor", "get", "doubler")
    assert shown == await cluster.actor("doubler")
    assert [(r["id"], r["status"], r["agent_id"]) for r in shown["replicas"]] == [
        (replica["id"], "running", "node-1")
    ]
    detail = (await user.run("actor", "get", "doubler")).stdout.splitlines()
    assert detail[:6] == [
        "name:        doubler",
        "status:      active",
        "generation:  2",
        "handler:     examples.pipeline:double",
        "resources:   cpu=1",
        "replicas:    1 running of 1 desired",
    ]
    assert table_rows("\n".join(detail))[10][:3] == [replica["id"], "running", "node-1"]

    # scale: pinned, then back to the autoscaler
    pinned = await user.json("actor", "scale", "incrementer", "0")
    assert (pinned["name"], pinned["pinned_replicas"], pinned["desired_replicas"]) == (
        "incrementer",
        0,
        0,
    )

    async def incrementer_stopped() -> bool:
        return (await cluster.actor("incrementer"))["replicas"] == []

    await wait_until(incrementer_stopped, what="incrementer's replica to stop", timeout=30)
    auto = await user.run("actor", "scale", "incrementer", "auto")
    assert re.fullmatch(r"incrementer: back to autoscaling \(\d running now\)\n", auto.stdout)
    await cluster.running_replicas("incrementer", 1)

    # logs: the replica's runtime and sidecar output, filtered by process and tail
    lines = await user.json_lines("actor", "logs", "doubler", "--tail", "3")
    assert {(line["replica_id"], line["process"]) for line in lines} == {
        (replica["id"], "runtime"),
        (replica["id"], "sidecar"),
    }
    one = await user.json_lines(
        "actor", "logs", "doubler", "--replica", replica["id"], "--tail", "1"
    )
    assert {line["replica_id"] for line in one} == {replica["id"]} and len(one) == 2
    sidecar = await user.json_lines(
        "actor", "logs", "doubler", "--process", "sidecar", "--tail", "2"
    )
    assert len(sidecar) == 2 and {line["process"] for line in sidecar} == {"sidecar"}
    plain = (
        await user.run("actor", "logs", "doubler", "--process", "sidecar", "--tail", "2")
    ).stdout
    assert plain.splitlines() == [f"[{replica['id']} sidecar] {line['line']}" for line in sidecar]

    # agents
    agents = await user.json("agent", "ls")
    assert [(a["id"], a["status"], a["labels"]) for a in agents] == [
        ("node-1", "alive", {"zone": "a"})
    ]
    agent = await user.json("agent", "get", "node-1")
    assert {r["actor_name"] for r in agent["replicas"]} == {
        "doubler",
        "incrementer",
        "happy-end",
        "error-end",
    }
    assert agent["slots_total"] == {"cpu": "8", "mem": str(16 * 2**30)}
    rows = table_rows((await user.run("agent", "ls")).stdout)
    assert rows[0] == ["ID", "STATUS", "ADDRESS", "CPU", "MEM", "GPUS", "REPLICAS", "HEARTBEAT"]
    assert rows[1][:7] == [
        "node-1",
        "alive",
        agent["addr"],
        usage_text(agent["slots_used"], agent["slots_total"], "cpu"),
        usage_text(agent["slots_used"], agent["slots_total"], "mem"),
        "-",
        "4",
    ]

    # errors: one line each, exit 1
    missing = await user.run("actor", "get", "nope", exit_code=1)
    assert (missing.stdout, missing.stderr) == (
        "",
        "error: actor 'nope' not found (HTTP 404, actor_not_found)\n",
    )
    refused = await user.run("admin", "keypair", "ls", exit_code=1)
    assert refused.stderr == "error: this route needs an admin keypair (HTTP 403, admin_required)\n"

    # admin: keypairs and API tokens
    created = await admin.json("admin", "keypair", "create", "--user", "alice")
    assert (created["user_name"], created["role"], created["is_admin"]) == ("alice", "user", False)
    listed = {k["access_key"]: k for k in await admin.json("admin", "keypair", "ls")}
    assert listed[created["access_key"]] == {
        key: value for key, value in created.items() if key != "secret_key"
    }
    alice = user.as_keypair(Keypair(created["access_key"], created["secret_key"]))
    assert [a["name"] for a in await alice.json("actor", "ls")] == ["doubler", "incrementer"]
    token = await admin.json(
        "admin",
        "token",
        "create",
        created["access_key"],
        "--name",
        "notebook",
        "--expires-in",
        "1h",
    )
    assert (token["access_key"], token["name"]) == (created["access_key"], "notebook")
    own = await admin.run("admin", "token", "create", "--token-only")  # for the signing key
    assert own.stdout.count("\n") == 1 and len(own.stdout.strip()) >= 32
    [own_info] = [t for t in await admin.json("admin", "token", "ls") if t["id"] != token["id"]]
    assert own_info["access_key"] == admin.env["BACKEND_ACCESS_KEY"]
    assert (await admin.run("admin", "token", "rm", own_info["id"])).exit_code == 0
    tokens = await admin.json("admin", "token", "ls")
    assert [t["id"] for t in tokens] == [token["id"]] and "token" not in tokens[0]
    removed = await admin.run("admin", "token", "rm", token["id"])
    assert removed.stdout == f"deleted API token {token['id']}\n"
    assert await admin.json("admin", "token", "ls") == []
    removed = await admin.run("admin", "keypair", "rm", created["access_key"])
    assert removed.stdout == f"deleted keypair {created['access_key']}\n"
    gone = await alice.run("actor", "ls", exit_code=1)
    assert gone.stderr.startswith("error: ") and "(HTTP 401, " in gone.stderr

    # rm
    deleted = await user.run("actor", "rm", "incrementer")
    assert deleted.stdout == "incrementer: deleted (its replicas are stopping)\n"

    async def incrementer_gone() -> bool:
        result = await user.run("actor", "get", "incrementer", exit_code=None)
        return result.exit_code == 1

    await wait_until(incrementer_gone, what="incrementer to be deleted", timeout=30)


EXTRA_TOOLS: list[dict[str, Any]] = [
    {
        "name": "tokens",
        "description": "Streams the words of a text, one partial output each.",
        "parameters": {"text": {"type": "string"}},
        "required": ["text"],
        "route": ["tokens"],
        "timeout": "30s",
    },
    {
        "name": "explode",
        "description": "Always fails.",
        "parameters": {"value": {"type": "integer"}},
        "route": ["breaker"],
        "timeout": "30s",
    },
    {
        "name": "stalled",
        "description": "Waits for an actor that nobody runs.",
        "route": ["nobody"],
        "timeout": "30s",
    },
]


async def _jobs_stack(cluster: Cluster, tmp_path: Path) -> tuple[CliUser, RunningGateway]:
    """An agent running the pipeline, a streamer, a failing actor and the echo model; a gateway
    that authenticates (HMAC or tokens) and reads the model registry; a user of both."""
    await cluster.add_agent("node-1")
    await asyncio.gather(
        deploy(cluster, "doubler", "examples.pipeline:double"),
        deploy(cluster, "incrementer", "examples.pipeline:increment"),
        deploy(cluster, "tokens", "examples.streaming:tokens"),
        deploy(cluster, "breaker", "examples.failures:fail_value_error"),
        deploy(cluster, "echo", "examples.kserve_echo:app"),
    )
    registry_reader = await insert_keypair(cluster.manager.database_url, "gateway")
    gateway = await gateway_for(
        cluster,
        write_tools(tmp_path / "tools.yaml", [*TEST_TOOLS, *EXTRA_TOOLS]),
        auth_mode="token",
        extra={
            "BACKEND_MANAGER__API": cluster.manager.endpoint,
            "BACKEND_MANAGER__ACCESS_KEY": registry_reader.access_key,
            "BACKEND_MANAGER__SECRET_KEY": registry_reader.secret_key,
        },
    )
    keys = await insert_keypair(cluster.manager.database_url, "user")
    signed = SignedClient(gateway.session, gateway.url, keys.access_key, keys.secret_key)

    async def model_ready() -> bool:
        return (await signed.get("/v2/models/echo/ready")).status == 200

    await wait_until(model_ready, what="the echo model at the gateway", timeout=30)
    return cli_user(tmp_path, keys, cluster.manager.endpoint, gateway.url), gateway


async def test_job_tool_and_model_commands(cluster: Cluster, tmp_path: Path) -> None:
    user, gateway = await _jobs_stack(cluster, tmp_path)
    signed = SignedClient(
        gateway.session, gateway.url, user.env["BACKEND_ACCESS_KEY"], user.env["BACKEND_SECRET_KEY"]
    )

    # tools: exactly the gateway's list
    tools = await user.json("tool", "ls")
    assert tools == (await signed.get("/v1/tools")).body["items"]
    rows = table_rows((await user.run("tool", "ls")).stdout)
    assert rows[0] == ["NAME", "ROUTE", "ARGUMENTS", "TIMEOUT", "DESCRIPTION"]
    assert ["double_then_increment", "doubler → incrementer", "value:integer*", "30s"] in [
        row[:4] for row in rows
    ]

    # run --follow: the result on stdout, how it went on stderr
    followed = await user.run(
        "job", "run", "double_then_increment", "--arg", "value=10", "--follow"
    )
    assert followed.stdout == '{\n  "value": 25\n}\n'
    job_id = followed.stderr.split()[1]
    assert followed.stderr.splitlines()[0] == (
        f"job {job_id} (double_then_increment: doubler → incrementer)"
    )
    assert re.fullmatch(rf"job {job_id} succeeded in \d+\.\ds", followed.stderr.splitlines()[-1])
    hops = followed.stderr.splitlines()[1:-1]
    assert hops[0] == "[0.00/2] doubler (1/2)" and "[1.00/2] incrementer (2/2)" in hops

    # partial outputs as they arrive, then the result
    streamed = await user.run("job", "run", "tokens", "--arg", "text=a b c", "--follow")
    assert streamed.stdout == 'a\nb\nc\n{\n  "text": "a b c",\n  "tokens": 3\n}\n'

    # run without --follow: the id at once; get / events / ls
    submitted = await user.run(
        "job", "run", "double_then_increment", "--json-args", '{"value": 1}', "--arg", "value=2"
    )
    second_id = submitted.stdout.strip()
    assert submitted.stderr == f"follow it: backend.ai job events {second_id} --follow\n"

    async def succeeded() -> Any:
        job = await user.json("job", "get", second_id)
        return job if job["status"] == "succeeded" else None

    job = await wait_until(succeeded, what="the second job to succeed", timeout=30)
    assert job == (await signed.get(f"/v1/jobs/{second_id}")).body
    assert (job["arguments"], job["result"], job["route"]) == (
        {"value": 2},
        {"value": 9},
        ["doubler", "incrementer"],
    )
    shown = (await user.run("job", "get", second_id)).stdout.splitlines()
    assert shown[:4] == [
        f"id:        {second_id}",
        "status:    succeeded",
        "tool:      double_then_increment",
        "route:     doubler → incrementer",
    ]
    assert shown[-4:] == ["result:", "{", '  "value": 9', "}"]
    events = await user.json_lines("job", "events", second_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (events[-1]["kind"], events[-1]["data"]["result"]) == ("succeeded", {"value": 9})
    assert {e["job_id"] for e in events} == {second_id}
    lines = (await user.run("job", "events", second_id, "--follow")).stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"#{e['seq']}" for e in events]
    assert lines[-1].endswith('  succeeded  happy-end  {"value": 9}')
    later = await user.json_lines("job", "events", second_id, "--after", str(len(events) - 1))
    assert later == events[-1:]

    # a failing job: exit 1 with its error, also as a child process
    failed = await user.run("job", "run", "explode", "--arg", "value=3", "--follow", exit_code=1)
    failed_id = failed.stderr.split()[1]
    assert failed.stdout == ""
    assert failed.stderr.splitlines()[-1] == (
        f"error: job {failed_id} failed: breaker: ValueError: bad value: {{'value': 3}}"
        " (processing_error)"
    )
    child = await asyncio.to_thread(
        run_module,
        "ai.backend.cli",
        ["job", "run", "explode", "--arg", "value=4", "--follow", "--json"],
        env=user.env,
    )
    assert child.returncode == 1, child.stderr
    ended = json.loads(child.stdout)
    assert (ended["status"], ended["error"]["message"]) == ("failed", "bad value: {'value': 4}")
    assert (
        child.stderr == f"error: job {ended['id']} failed: breaker: ValueError: bad value:"
        " {'value': 4} (processing_error)\n"
    )
    failures = await user.json("job", "ls", "--status", "failed")
    assert [j["id"] for j in failures["items"]] == [ended["id"], failed_id]
    page = await user.json("job", "ls", "--limit", "2")
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await user.json("job", "ls", "--limit", "10", "--cursor", page["next_cursor"])
    ids = [j["id"] for j in page["items"] + rest["items"]]
    assert ids[::-1][:4] == [job_id, ids[::-1][1], second_id, failed_id]
    listing = table_rows((await user.run("job", "ls", "--status", "failed")).stdout)
    assert [row[:4] for row in listing] == [
        ["ID", "STATUS", "TOOL", "ROUTE"],
        [ended["id"], "failed", "explode", "breaker"],
        [failed_id, "failed", "explode", "breaker"],
    ]

    # cancel: a job waiting for an actor nobody runs
    stalled = await user.json("job", "run", "stalled")
    assert (stalled["status"], stalled["route"]) == ("pending", ["nobody"])
    quiet = await user.run("job", "events", stalled["id"])  # nothing happened yet
    assert (quiet.stdout, quiet.stderr) == ("", "")
    cancelled = await user.json("job", "cancel", stalled["id"])
    assert (cancelled["status"], cancelled["error"]) == (
        "cancelled",
        {"code": "cancelled", "message": "cancelled by the caller"},
    )
    again = await user.run("job", "cancel", stalled["id"], exit_code=1)
    assert again.stderr.startswith("error: ") and again.stderr.endswith("(HTTP 409, conflict)\n")
    follow_cancelled = await user.run("job", "events", stalled["id"], "--follow", exit_code=1)
    assert follow_cancelled.stderr == (
        f"error: job {stalled['id']} was cancelled: cancelled by the caller (cancelled)\n"
    )
    unknown = await user.run("job", "get", "nope", exit_code=1)
    assert unknown.stderr == "error: no job 'nope' (HTTP 404, not_found)\n"
    too_long = await user.run("job", "run", "double", "--timeout", "2d", exit_code=1)
    assert too_long.stderr == (
        "error: (root): timeout: must be above 0 and at most 23 hours"
        " (HTTP 400, invalid_argument)\n"
    )

    # models: the registry, and inference by --input or by a request body
    models = await user.json("model", "ls")
    assert [(m["name"], m["version"], m["actor_name"]) for m in models] == [("echo", "1", "echo")]
    inferred = await user.json("model", "infer", "echo", "--input", "INPUT0:FP32:2,2:[[1,2],[3,4]]")
    assert inferred["outputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    ]
    body = tmp_path / "request.json"
    body.write_text(
        json.dumps(
            {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [3], "data": [0.5, 1, 2]}]}
        )
    )
    table = table_rows((await user.run("model", "infer", "echo", "--json-body", str(body))).stdout)
    assert table[1:] == [
        ["OUTPUT", "DATATYPE", "SHAPE", "DATA"],
        ["INPUT0", "FP32", "[3]", "[0.5,1,2]"],
    ]
    missing = await user.run("model", "infer", "nope", "--input", "x:FP32:1:[1]", exit_code=1)
    assert missing.stderr.startswith("error: ") and "(HTTP 404, " in missing.stderr

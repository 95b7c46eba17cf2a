"""The asynchronous session against real processes: a manager, an agent running the actors, and
a gateway that checks HMAC signatures. One platform for the whole tour (starting one takes
seconds), checked resource by resource."""

from __future__ import annotations

import os
from pathlib import Path

import examples.failures  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401
import pytest

from ai.backend.client import AsyncSession, ClientConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.common.dto.gateway_api import JobHandle, JobInfo
from ai.backend.common.dto.manager_api import ApplyResult
from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import deploy
from ai.backend.testutils.waiting import wait_until

CREW = {"happy-end", "error-end"}


def write_doubler_spec(folder: Path) -> Path:
    """``doubler``'s spec in a folder of its own, finding the handler through a pythonpath
    relative to that folder (the repository root, where ``examples`` is)."""
    folder.mkdir(parents=True)
    relative_root = os.path.relpath(Path.cwd(), folder)
    path = folder / "doubler.yaml"
    path.write_text(
        "name: doubler\n"
        "handler: examples.pipeline:double\n"
        f"pythonpath: [{relative_root}]\n"
        "execution: inprocess\n"
        "concurrency: 8\n"
        "timeout: 10s\n"
    )
    return path


async def check_actors(session: AsyncSession, cluster: Cluster, tmp_path: Path) -> None:
    spec_path = write_doubler_spec(tmp_path / "specs")
    assert await session.actors.apply(spec_path) == ApplyResult(
        name="doubler", generation=1, created=True, changed=True
    )
    assert await session.actors.apply(str(spec_path)) == ApplyResult(
        name="doubler", generation=1, created=False, changed=False
    )
    await cluster.running_replicas("doubler", 1)
    doubler = await session.actors.get("doubler")
    assert doubler.spec["pythonpath"] == [str(Path.cwd())]
    assert (doubler.spec["handler"], doubler.spec["execution"]) == (
        "examples.pipeline:double",
        "inprocess",
    )
    assert (doubler.name, doubler.status, doubler.generation, doubler.is_system) == (
        "doubler",
        "active",
        1,
        False,
    )
    assert (doubler.desired_replicas, doubler.pinned_replicas, doubler.running_replicas) == (
        1,
        None,
        1,
    )
    [replica] = doubler.replicas
    assert (replica.actor_name, replica.agent_id, replica.status, replica.generation) == (
        "doubler",
        "node-1",
        "running",
        1,
    )
    listed = {actor.name: actor for actor in await session.actors.list()}
    assert set(listed) == {"doubler", "incrementer", "sleeper"} | CREW
    assert {name for name, actor in listed.items() if actor.is_system} == CREW
    assert listed["doubler"].model_dump() == doubler.model_dump(
        include=set(type(listed["doubler"]).model_fields)
    )

    pinned = await session.actors.scale("doubler", 2)
    assert (pinned.name, pinned.pinned_replicas, pinned.desired_replicas, pinned.generation) == (
        "doubler",
        2,
        2,
        1,
    )
    await cluster.running_replicas("doubler", 2)
    automatic = await session.actors.scale("doubler", "auto")
    assert (automatic.pinned_replicas, automatic.generation) == (None, 1)


async def check_delete(session: AsyncSession) -> None:
    deleting = await session.actors.delete("sleeper")
    assert (deleting.name, deleting.status) == ("sleeper", "deleting")

    async def sleeper_gone() -> BackendAPIError | None:
        try:
            await session.actors.get("sleeper")
        except BackendAPIError as e:
            return e
        return None

    gone = await wait_until(sleeper_gone, what="sleeper to be deleted", timeout=30)
    assert (gone.status, gone.code, gone.message) == (
        404,
        "actor_not_found",
        "actor 'sleeper' not found",
    )


async def check_agents(session: AsyncSession) -> None:
    [agent] = await session.agents.list()
    assert (agent.id, agent.status) == ("node-1", "alive")
    detail = await session.agents.get("node-1")
    assert detail.id == "node-1"
    assert {r.actor_name for r in detail.replicas} >= {"doubler", "incrementer"}
    with pytest.raises(BackendAPIError) as missing:
        await session.agents.get("node-9")
    assert (missing.value.status, missing.value.code) == (404, "agent_not_found")


async def check_tools_and_jobs(session: AsyncSession, config: ClientConfig) -> None:
    tools = await session.tools.list()
    assert [t.name for t in tools] == ["double", "double_then_increment"]
    assert (tools[1].route, tools[1].progress, tools[1].timeout_seconds, tools[1].wait_seconds) == (
        ["doubler", "incrementer"],
        True,
        30.0,
        10.0,
    )

    finished = await session.tools.call("double", {"value": 4}, wait=20)
    assert isinstance(finished, JobInfo)
    assert (finished.status, finished.result, finished.arguments, finished.tool) == (
        "succeeded",
        {"value": 8},
        {"value": 4},
        "double",
    )

    handle = await session.tools.call("double_then_increment", {"value": 10})
    assert isinstance(handle, JobHandle)
    gateway = config.gateway_endpoint
    assert handle == JobHandle(
        job_id=handle.job_id,
        status="pending",
        status_url=f"{gateway}/v1/jobs/{handle.job_id}",
        stream_url=f"{gateway}/v1/jobs/{handle.job_id}/events",
    )
    events = [event async for event in session.jobs.events(handle.job_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.job_id for e in events} == {handle.job_id}
    assert events[-1].kind == "succeeded" and events[-1].data["result"] == {"value": 25}
    assert {e.kind for e in events[:-1]} <= {"running", "progress", "partial"}
    tool_job = await session.jobs.get(handle.job_id)
    assert (tool_job.status, tool_job.result, tool_job.progress, tool_job.error) == (
        "succeeded",
        {"value": 25},
        1.0,
        None,
    )

    by_route = await session.jobs.submit(
        route=["doubler", "incrementer"], arguments={"value": 1}, timeout="30s"
    )
    assert (by_route.tool, by_route.route, by_route.arguments) == (
        None,
        ["doubler", "incrementer"],
        {"value": 1},
    )
    assert by_route.deadline_at is not None
    waited = await session.jobs.wait(by_route.id, timeout=30)
    assert (waited.status, waited.result) == ("succeeded", {"value": 7})

    slow = await session.jobs.submit(route=["sleeper"], arguments={"seconds": 60})
    cancelled = await session.jobs.cancel(slow.id)
    assert (cancelled.id, cancelled.status) == (slow.id, "cancelled")
    with pytest.raises(BackendAPIError) as conflict:
        await session.jobs.cancel(by_route.id)
    assert (conflict.value.status, conflict.value.code) == (409, "conflict")
    assert str(conflict.value) == f"409 conflict: {conflict.value.message}"

    succeeded = await session.jobs.list(status="succeeded")
    assert [j.id for j in succeeded.items] == [by_route.id, handle.job_id, finished.id]
    assert succeeded.next_cursor is None
    assert [j.id for j in (await session.jobs.list(status="cancelled")).items] == [slow.id]
    first = await session.jobs.list(limit=1)
    assert [j.id for j in first.items] == [slow.id] and first.next_cursor
    rest = await session.jobs.list(limit=10, cursor=first.next_cursor)
    assert [j.id for j in rest.items] == [by_route.id, handle.job_id, finished.id]
    with pytest.raises(BackendAPIError) as bad_status:
        await session.jobs.list(status="done")
    assert (bad_status.value.status, bad_status.value.code) == (400, "invalid_argument")


async def check_admin(session: AsyncSession, config: ClientConfig) -> None:
    alice = await session.admin.keypairs.create(user_name="alice")
    assert (alice.user_name, alice.role, alice.is_admin, alice.is_active) == (
        "alice",
        "user",
        False,
        True,
    )
    assert alice.access_key in {k.access_key for k in await session.admin.keypairs.list()}
    alice_config = config.model_copy(
        update={"access_key": alice.access_key, "secret_key": alice.secret_key}
    )
    async with AsyncSession(alice_config) as as_alice:
        assert [t.name for t in await as_alice.tools.list()] == ["double", "double_then_increment"]
        with pytest.raises(BackendAPIError) as not_admin:
            await as_alice.admin.keypairs.list()
        assert (not_admin.value.status, not_admin.value.code) == (403, "admin_required")

    token = await session.admin.tokens.create(alice.access_key, name="ci", expires_in="1h")
    assert token.token.startswith("bai_")
    assert (token.access_key, token.name) == (alice.access_key, "ci")
    assert token.expires_at is not None
    assert token.id in {t.id for t in await session.admin.tokens.list()}
    await session.admin.tokens.delete(token.id)
    assert token.id not in {t.id for t in await session.admin.tokens.list()}
    await session.admin.keypairs.delete(alice.access_key)
    assert alice.access_key not in {k.access_key for k in await session.admin.keypairs.list()}


async def check_wrong_secret(config: ClientConfig) -> None:
    wrong = config.model_copy(update={"secret_key": "not-the-secret"})
    async with AsyncSession(wrong) as session:
        with pytest.raises(BackendAPIError) as at_manager:
            await session.actors.list()
        with pytest.raises(BackendAPIError) as at_gateway:
            await session.tools.list()
    assert (at_manager.value.status, at_manager.value.code, at_manager.value.message) == (
        401,
        "invalid_signature",
        "signature mismatch",
    )
    assert (at_gateway.value.status, at_gateway.value.code, at_gateway.value.message) == (
        401,
        "unauthorized",
        "signature mismatch",
    )


@pytest.mark.timeout(300)
async def test_async_session_drives_every_resource(
    cluster: Cluster, platform_config: ClientConfig, tmp_path: Path
) -> None:
    await deploy(cluster, "incrementer", "examples.pipeline:increment", execution="inprocess")
    await deploy(cluster, "sleeper", "examples.failures:async_slow", execution="inprocess")
    async with AsyncSession(platform_config) as session:
        await check_actors(session, cluster, tmp_path)
        await check_agents(session)
        await check_tools_and_jobs(session, platform_config)
        await check_admin(session, platform_config)
        await check_delete(session)
    await check_wrong_secret(platform_config)

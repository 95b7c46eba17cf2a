"""The synchronous session against real processes (its event loop runs in a thread of its own,
so the test itself is plain synchronous code): actors, agents, a tool call, a job's events as a
plain iterator, the KServe echo model, and replica logs."""

from __future__ import annotations

from pathlib import Path

import examples.kserve_echo  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401
import pytest

from ai.backend.client import AsyncSession, ClientConfig, Session
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.common.dto.gateway_api import JobHandle, JobInfo
from ai.backend.common.dto.manager_api import ApplyResult, ModelInfo
from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import deploy
from ai.backend.testutils.processes import wait_until as wait_until_sync
from ai.backend.testutils.waiting import wait_until

TENSOR = {"name": "INPUT0", "datatype": "FP32", "shape": [3], "data": [1.0, 2.5, -3.0]}


@pytest.fixture
async def echo_platform(cluster: Cluster, platform_config: ClientConfig) -> ClientConfig:
    """The platform with the KServe echo model deployed and registered."""
    await deploy(cluster, "kserve-echo", "examples.kserve_echo:app", concurrency=8)
    async with AsyncSession(platform_config) as session:

        async def registered() -> bool:
            return bool(await session.models.list())

        await wait_until(registered, what="the echo model in the registry", timeout=30)
    return platform_config


@pytest.mark.timeout(300)
def test_sync_session_covers_the_everyday_calls(echo_platform: ClientConfig) -> None:
    with Session(echo_platform) as session:
        applied = session.actors.apply(
            {
                "name": "doubler",
                "handler": "examples.pipeline:double",
                "pythonpath": [str(Path.cwd())],
                "execution": "inprocess",
            }
        )
        assert applied == ApplyResult(name="doubler", generation=1, created=True, changed=True)
        wait_until_sync(
            lambda: session.actors.get("doubler").running_replicas == 1,
            timeout=40,
            what="a running doubler",
            interval=0.2,
        )
        assert sorted(a.name for a in session.actors.list()) == [
            "doubler",
            "error-end",
            "happy-end",
            "kserve-echo",
        ]
        assert [(a.id, a.status) for a in session.agents.list()] == [("node-1", "alive")]

        done = session.tools.call("double", {"value": 5}, wait=20)
        assert isinstance(done, JobInfo)
        assert (done.status, done.result) == ("succeeded", {"value": 10})
        handle = session.tools.call("double", {"value": 6})
        assert isinstance(handle, JobHandle)
        events = list(session.jobs.events(handle.job_id))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert (events[-1].kind, events[-1].data["result"]) == ("succeeded", {"value": 12})
        first_only = session.jobs.events(handle.job_id)
        assert next(first_only) == events[0]
        first_only.close()  # leaving early closes the stream on the session's loop
        assert session.jobs.wait(handle.job_id, timeout=10).result == {"value": 12}
        assert [j.id for j in session.jobs.list(limit=2).items] == [handle.job_id, done.id]

        [echo] = session.models.list()
        assert echo == ModelInfo(
            name="echo", version="1", actor_name="kserve-echo", metadata=echo.metadata
        )
        answer = session.models.infer("echo", [TENSOR], request_id="r1")
        assert answer == {
            "model_name": "echo",
            "model_version": "1",
            "id": "r1",
            "outputs": [TENSOR],
        }
        assert session.models.infer("echo", [TENSOR], version="1")["outputs"] == [TENSOR]

        [replica] = session.actors.get("kserve-echo").replicas
        lines = list(session.actors.logs("kserve-echo", tail=5))
        assert {(line.replica_id, line.process) for line in lines} == {
            (replica.id, "runtime"),
            (replica.id, "sidecar"),
        }
        assert any("serving examples.kserve_echo:app" in line.line for line in lines)
        [last] = session.actors.logs(
            "kserve-echo", replica=replica.id[:14], process="sidecar", tail=1
        )
        assert (last.replica_id, last.process) == (replica.id, "sidecar")
        assert last == [line for line in lines if line.process == "sidecar"][-1]
        following = session.actors.logs("kserve-echo", process="sidecar", tail=1, follow=True)
        assert next(following) == last
        following.close()  # a followed log ends when the caller stops reading
        with pytest.raises(BackendAPIError) as unknown:
            list(session.actors.logs("nobody"))
        assert (unknown.value.status, unknown.value.code) == (404, "actor_not_found")

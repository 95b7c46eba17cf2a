"""``execution: inprocess`` as a user runs it: the README pipeline from the example specs, each
actor one sidecar process and no runtime."""

from __future__ import annotations

import pytest

from ai.backend.testutils.assertions import without_times
from ai.backend.testutils.dataplane import DataPlane

SPECS = {
    "doubler": "examples/specs/doubler.inprocess.yaml",
    "incrementer": "examples/specs/incrementer.inprocess.yaml",
}


@pytest.fixture
def execution() -> str:
    return "inprocess"


async def test_the_readme_pipeline_runs_from_the_in_process_example_specs(
    plane: DataPlane,
) -> None:
    for actor, spec in SPECS.items():
        child = plane.processes.start(
            f"sidecar-{actor}", ["sidecar", "run", "--actor", actor, "--spec", spec]
        )
        await plane.wait_for(
            lambda a=actor: plane.has_consumers(a), what=f"the {actor} sidecar", watch=[child]
        )
    await plane.publish(["doubler", "incrementer"], {"value": 10}, job_id="job-1")
    terminal = await plane.wait_terminal("job-1")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 25})
    running = [
        {k: e[k] for k in ("kind", "actor", "step", "total", "attempt")}
        for e in without_times(await plane.events("job-1"))
        if e["kind"] == "running"
    ]
    assert running == [
        {"kind": "running", "actor": "doubler", "step": 1, "total": 2, "attempt": 1},
        {"kind": "running", "actor": "incrementer", "step": 2, "total": 2, "attempt": 1},
    ]
    # no runtime: the two actors and the crew are four sidecars
    assert sorted(c.name for c in plane.processes.children) == [
        "sidecar-doubler",
        "sidecar-error-end-1",
        "sidecar-happy-end-0",
        "sidecar-incrementer",
    ]

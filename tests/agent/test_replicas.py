"""The agent's replicas as real processes: started, supervised, drained and adopted."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from ai.backend.agent.clients.processes import process_start_time
from ai.backend.agent.services.reconciler import Reconciler
from ai.backend.common.dto.agent import ReplicaStatus
from ai.backend.testutils.agent import (
    ReconcilerFactory,
    crew_replicas,
    desired_replica,
    report_of,
    wait_status,
    wait_until,
)
from ai.backend.testutils.dataplane import DataPlane


async def test_doubler_replica_processes_an_envelope(
    reconciler: Reconciler, plane: DataPlane
) -> None:
    await reconciler.reconcile([*crew_replicas(), desired_replica("d1", "doubler")])
    report = await wait_status(reconciler, "d1", "running")
    assert report.runtime is not None
    assert (report.runtime.handler, report.runtime.protocol) == ("examples.pipeline:double", 1)
    await wait_status(reconciler, "crew-happy-end", "running")
    envelope = await plane.publish(["doubler"], {"value": 21})
    terminal = await plane.wait_terminal(envelope.id)
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 42})


async def test_sidecar_status_file_names_the_sidecar_and_the_runtime_hello(
    reconciler: Reconciler, state_dir: Path
) -> None:
    await reconciler.reconcile([desired_replica("d1", "doubler", concurrency=3)])
    await wait_status(reconciler, "d1", "running")
    status = json.loads((state_dir / "replicas" / "d1" / "status.json").read_text())
    pids = reconciler.supervisors["d1"].pids()
    assert (status["pid"], status["state"]) == (pids["sidecar"], "running")
    assert (status["hello"]["pid"], status["hello"]["concurrency"]) == (pids["runtime"], 3)


async def test_whole_devices_are_visible_to_the_handler(
    reconciler: Reconciler, plane: DataPlane
) -> None:
    gpu = desired_replica(
        "g1",
        "gpu-probe",
        "examples.probes:environment",
        resources={"cuda.device": 2},
        slots={"cpu": 1, "cuda.device": 2},
        device_ids=["0", "1"],
    )
    await reconciler.reconcile([*crew_replicas(), gpu])
    await wait_status(reconciler, "g1", "running")
    envelope = await plane.publish(["gpu-probe"], {"n": 1})
    terminal = await plane.wait_terminal(envelope.id)
    assert terminal["result"] == {"n": 1, "CUDA_VISIBLE_DEVICES": "0,1", "BACKEND_GPU_SHARE": None}


async def test_a_fraction_of_a_gpu_is_announced_as_a_share(
    reconciler: Reconciler, plane: DataPlane
) -> None:
    shared = desired_replica(
        "s1",
        "share-probe",
        "examples.probes:environment",
        resources={"cuda.shares": 0.5},
        slots={"cpu": 1, "cuda.shares": "0.5"},
        device_ids=["1"],
    )
    await reconciler.reconcile([*crew_replicas(), shared])
    await wait_status(reconciler, "s1", "running")
    envelope = await plane.publish(["share-probe"], {})
    terminal = await plane.wait_terminal(envelope.id)
    assert terminal["result"] == {"CUDA_VISIBLE_DEVICES": "1", "BACKEND_GPU_SHARE": "0.5"}


async def test_in_process_replica_runs_in_its_sidecar_alone(
    reconciler: Reconciler, plane: DataPlane
) -> None:
    inprocess = desired_replica(
        "i1",
        "inproc-probe",
        "examples.probes:environment",
        execution="inprocess",
        resources={"cuda.device": 1},
        slots={"cpu": 1, "cuda.device": 1},
        device_ids=["3"],
    )
    await reconciler.reconcile([*crew_replicas(), inprocess])
    report = await wait_status(reconciler, "i1", "running")
    assert report.runtime is not None and report.runtime.handler == "examples.probes:environment"
    assert set(reconciler.supervisors["i1"].pids()) == {"sidecar"}
    envelope = await plane.publish(["inproc-probe"], {})
    terminal = await plane.wait_terminal(envelope.id)
    assert terminal["result"] == {"CUDA_VISIBLE_DEVICES": "3", "BACKEND_GPU_SHARE": None}


async def test_killed_runtime_is_restarted_alone(
    reconciler: Reconciler, plane: DataPlane, state_dir: Path
) -> None:
    await reconciler.reconcile([*crew_replicas(), desired_replica("d1", "doubler")])
    await wait_status(reconciler, "d1", "running")
    before = reconciler.supervisors["d1"].pids()
    os.kill(before["runtime"], signal.SIGKILL)

    def restarted() -> bool:
        report = report_of(reconciler, "d1")
        pids = reconciler.supervisors["d1"].pids()
        return (
            report is not None
            and report.restarts == 1
            and report.status == ReplicaStatus.RUNNING
            and pids.get("runtime", before["runtime"]) != before["runtime"]
        )

    await wait_until(restarted, what="the runtime restarted and reconnected")
    after = reconciler.supervisors["d1"].pids()
    assert after["sidecar"] == before["sidecar"]
    status = json.loads((state_dir / "replicas" / "d1" / "status.json").read_text())
    assert status["hello"]["pid"] == after["runtime"]  # the sidecar announced the new runtime
    envelope = await plane.publish(["doubler"], {"value": 5})
    terminal = await plane.wait_terminal(envelope.id)
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 10})


async def test_handler_that_cannot_load_fails_after_the_crash_limit(
    reconciler: Reconciler,
) -> None:
    await reconciler.reconcile([desired_replica("b1", "broken", "examples.missing:handler")])
    report = await wait_status(reconciler, "b1", "failed")
    assert report.restarts == 2  # crash_limit 3: two restarts, then it stays down
    assert report.status_info is not None
    assert report.status_info.startswith(
        "runtime exit status 3 (the handler cannot be loaded) (3 crashes)"
    )
    assert "examples.missing" in report.status_info
    # the sidecar is stopped too (right after the failure is reported)
    await wait_until(lambda: reconciler.supervisors["b1"].pids() == {}, what="no process left")
    await reconciler.reconcile([])
    await wait_until(lambda: not reconciler.reports(), what="the failed replica gone")


async def test_undesired_replica_is_drained_and_forgotten(
    reconciler: Reconciler, state_dir: Path
) -> None:
    await reconciler.reconcile([desired_replica("d1", "doubler")])
    await wait_status(reconciler, "d1", "running")
    pids = reconciler.supervisors["d1"].pids()
    await reconciler.reconcile([])
    assert report_of(reconciler, "d1") is not None  # terminating until the processes are gone
    await wait_until(lambda: not reconciler.reports(), what="the drained replica gone")
    assert all(process_start_time(pid) is None for pid in pids.values())
    folder = state_dir / "replicas" / "d1"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".log") == [
        "runtime.log",
        "sidecar.log",
    ]
    assert not (folder / "state.json").exists()


async def test_process_ignoring_sigterm_is_killed_after_the_grace(
    reconciler: Reconciler, tmp_path: Path
) -> None:
    stubborn = tmp_path / "stubborn-python"
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\n'{sys.executable}' \"$@\"\n")
    stubborn.chmod(0o755)
    await reconciler.reconcile([desired_replica("d1", "doubler", python=str(stubborn))])
    await wait_status(reconciler, "d1", "running")
    runtime = reconciler.supervisors["d1"].process("runtime")
    assert runtime is not None
    await reconciler.reconcile([])
    report = report_of(reconciler, "d1")
    assert report is not None and report.status == ReplicaStatus.TERMINATING
    await wait_until(lambda: not reconciler.reports(), what="the stubborn replica gone")
    assert runtime.returncode == -signal.SIGKILL


async def test_new_agent_adopts_live_replicas_and_cleans_up_dead_ones(
    make_reconciler: ReconcilerFactory, plane: DataPlane, state_dir: Path
) -> None:
    first = make_reconciler()
    replicas = [desired_replica("live", "doubler"), desired_replica("dead", "other")]
    await first.reconcile([*crew_replicas(), *replicas])
    await wait_status(first, "live", "running")
    await wait_status(first, "dead", "running")
    live, dead = first.supervisors["live"].pids(), first.supervisors["dead"].pids()
    await first.detach()  # the agent exits; its replicas keep running
    for pid in dead.values():
        os.kill(pid, signal.SIGKILL)
    await wait_until(
        lambda: all(process_start_time(pid) is None for pid in dead.values()),
        what="the dead replica's processes gone",
    )

    second = make_reconciler()
    adopted = await second.adopt_existing()
    assert sorted(adopted) == ["crew-error-end", "crew-happy-end", "live"]
    assert second.supervisors["live"].pids() == live
    report = await wait_status(second, "live", "running")
    assert report.runtime is not None
    assert not (state_dir / "replicas" / "dead" / "state.json").exists()
    assert (state_dir / "replicas" / "dead" / "sidecar.log").exists()
    envelope = await plane.publish(["doubler"], {"value": 4})
    assert (await plane.wait_terminal(envelope.id))["result"] == {"value": 8}

    os.kill(live["runtime"], signal.SIGKILL)  # an adopted process is watched, not awaited
    await wait_until(
        lambda: (r := report_of(second, "live")) is not None
        and r.restarts == 1
        and r.status == ReplicaStatus.RUNNING,
        what="the adopted runtime restarted",
    )
    await second.reconcile(crew_replicas())  # no longer desired: drained though not our child
    await wait_until(lambda: report_of(second, "live") is None, what="the adopted replica drained")
    assert process_start_time(live["sidecar"]) is None

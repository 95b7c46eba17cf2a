from __future__ import annotations

import pytest
from pydantic import ValidationError

from ai.backend.common.dto.agent import AgentHeartbeat, HeartbeatReply, ReplicaStatus
from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.types.slots import ResourceSlot


def _heartbeat() -> dict[str, object]:
    return {
        "agent_id": "node-1",
        "addr": "127.0.0.1:6001",
        "version": "0.1.0",
        "slots_total": {"cpu": 8, "mem": "32g", "cuda.device": 2},
        "devices": [
            {"id": "0", "model": "Mock A100", "memory": "40g", "uuid": "GPU-0"},
            {"id": "1", "model": "Mock A100", "memory": "40g"},
        ],
        "labels": {"zone": "a"},
        "replicas": [
            {
                "replica_id": "r1",
                "actor_name": "doubler",
                "generation": 1,
                "status": "running",
                "runtime": {
                    "protocol": 1,
                    "handler": "examples.pipeline.handlers:double",
                    "concurrency": 8,
                    "models": [{"name": "resnet", "version": "1"}],
                },
            }
        ],
    }


def test_a_heartbeat_round_trips() -> None:
    heartbeat = AgentHeartbeat.model_validate(_heartbeat())
    assert heartbeat.slots_total == ResourceSlot.parse({"cpu": 8, "mem": "32g", "cuda.device": 2})
    assert heartbeat.devices[0].memory == 40 * 1024**3
    assert heartbeat.replicas[0].status is ReplicaStatus.RUNNING
    assert AgentHeartbeat.model_validate_json(heartbeat.model_dump_json()) == heartbeat


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slots_total": {"cpu": "many"}}, "slots_total: cpu: expected a number, got 'many'"),
        ({"devices": [{"id": "0", "model": "x", "memory": "lots"}]}, "devices[0].memory"),
        ({"agent_id": ""}, "agent_id: String should have at least 1 character"),
        ({"uptime": 5}, "uptime: unknown key"),
    ],
)
def test_bad_heartbeats_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AgentHeartbeat.model_validate({**_heartbeat(), **change})
    assert message in summarize_validation_error(info.value)


def test_a_reply_carries_specs_and_allocations() -> None:
    reply = HeartbeatReply.model_validate(
        {
            "desired": [
                {
                    "replica_id": "r1",
                    "actor_name": "doubler",
                    "generation": 2,
                    "spec": {
                        "name": "doubler",
                        "handler": "m:f",
                        "resources": {"cuda.shares": 0.5},
                    },
                    "slots": {"cpu": 1, "cuda.shares": 0.5},
                    "device_ids": ["0"],
                }
            ]
        }
    )
    desired = reply.desired[0]
    assert desired.spec.wants_gpu
    assert desired.slots.to_json() == {"cpu": "1", "cuda.shares": "0.5"}
    assert desired.device_ids == ["0"]

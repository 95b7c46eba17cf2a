from __future__ import annotations

from typing import Any

import pytest

from ai.backend.testutils.control_plane import RunningManager, wait_until

DOUBLER = {"handler": "examples.pipeline:double", "pythonpath": ["/srv/examples"]}


async def test_apply_creates_then_reapply_is_a_no_op_and_a_change_bumps_generation(
    manager: RunningManager,
) -> None:
    client = manager.client()
    created = await client.put("/v1/actors/doubler", DOUBLER)
    assert (created.status, created.body) == (
        201,
        {"name": "doubler", "generation": 1, "created": True, "changed": True},
    )
    same = await client.put("/v1/actors/doubler", {**DOUBLER, "name": "doubler"})
    assert (same.status, same.body) == (
        200,
        {"name": "doubler", "generation": 1, "created": False, "changed": False},
    )
    changed = await client.put("/v1/actors/doubler", {**DOUBLER, "concurrency": 4})
    assert (changed.status, changed.body["generation"], changed.body["changed"]) == (200, 2, True)
    got = await client.get("/v1/actors/doubler")
    assert got.status == 200
    assert got.body["spec"]["concurrency"] == 4
    assert got.body["spec"]["scaling"]["min_replicas"] == 1
    assert got.body["spec"]["scaling"]["max_replicas"] == 1
    assert got.body["desired_replicas"] == 1
    events = {e["kind"]: e["message"] for e in got.body["events"]}
    assert got.body["events"][0]["kind"] == "created"
    assert events["updated"] == "spec changed: generation 2, replicas are replaced"


async def test_a_replica_that_cannot_be_placed_says_why(manager: RunningManager) -> None:
    client = manager.client()
    assert (
        await client.put("/v1/actors/gpu-job", {**DOUBLER, "resources": {"cuda.device": 2}})
    ).status == 201

    async def explained() -> dict[str, Any] | None:
        body = (await client.get("/v1/actors/gpu-job")).body
        pending = [r for r in body["replicas"] if r["status"] == "pending"]
        unschedulable = [e for e in body["events"] if e["kind"] == "unschedulable"]
        return body if pending and unschedulable else None

    body = await wait_until(explained, what="an unschedulable event")
    assert len(body["replicas"]) == 1
    assert body["replicas"][0]["agent_id"] is None
    assert body["replicas"][0]["device_ids"] == []
    [event] = [e for e in body["events"] if e["kind"] == "unschedulable"]
    assert event["message"] == "no alive agent"
    assert body["replicas"][0]["status_info"] == event["message"]


async def test_scale_pins_and_auto_unpins_without_a_new_generation(manager: RunningManager) -> None:
    client = manager.client()
    await client.put(
        "/v1/actors/doubler", {**DOUBLER, "scaling": {"min_replicas": 0, "max_replicas": 5}}
    )
    pinned = await client.post("/v1/actors/doubler/scale", {"replicas": 3})
    assert pinned.status == 200
    assert (pinned.body["pinned_replicas"], pinned.body["desired_replicas"]) == (3, 3)
    assert pinned.body["generation"] == 1

    async def three_replicas() -> bool:
        body = (await client.get("/v1/actors/doubler")).body
        return len([r for r in body["replicas"] if r["status"] == "pending"]) == 3

    await wait_until(three_replicas, what="3 pending replicas")
    auto = await client.post("/v1/actors/doubler/scale", {"replicas": "auto"})
    assert (auto.status, auto.body["pinned_replicas"], auto.body["generation"]) == (200, None, 1)


async def test_delete_drains_then_removes_the_actor(manager: RunningManager) -> None:
    client = manager.client()
    await client.put("/v1/actors/doubler", DOUBLER)
    deleted = await client.delete("/v1/actors/doubler")
    assert (deleted.status, deleted.body["status"]) == (202, "deleting")

    async def gone() -> bool:
        return (await client.get("/v1/actors/doubler")).status == 404

    await wait_until(gone, what="the actor to go")
    missing = await client.get("/v1/actors/doubler")
    assert missing.body == {"error": "actor 'doubler' not found", "code": "actor_not_found"}
    assert (await client.delete("/v1/actors/doubler")).status == 404


async def test_the_crew_is_protected(manager: RunningManager) -> None:
    client = manager.client()
    scaled = await client.post("/v1/actors/happy-end/scale", {"replicas": 0})
    assert scaled.body == {
        "error": "actor 'happy-end' belongs to the platform",
        "code": "system_actor",
    }
    deleted = await client.delete("/v1/actors/happy-end")
    assert (deleted.status, deleted.body["code"]) == (403, "system_actor")
    applied = await client.put("/v1/actors/happy-end", DOUBLER)
    assert applied.status == 400
    assert applied.body["error"] == (
        "name: actor name 'happy-end' is reserved for the platform's crew actors"
    )
    crew = (await client.get("/v1/actors/error-end")).body
    assert (crew["is_system"], crew["desired_replicas"]) == (True, 1)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({**DOUBLER, "colour": "red"}, "colour: unknown key"),
        ({**DOUBLER, "resources": {"gpu": 1}}, "resources: unknown resource slot 'gpu'"),
        ({**DOUBLER, "concurrency": 0}, "concurrency: Input should be greater than or equal to 1"),
        ({**DOUBLER, "timeout": "soon"}, "timeout: invalid duration 'soon'"),
        (
            {**DOUBLER, "scaling": {"min_replicas": 3, "max_replicas": 2}},
            "scaling: scaling.min_replicas (3) exceeds scaling.max_replicas (2)",
        ),
        ({"handler": "no-colon"}, "handler: invalid handler 'no-colon'"),
        ({**DOUBLER, "name": "other"}, "name: 'other' does not match the URL's 'doubler'"),
        ([1, 2], "(root): expected a JSON object holding an actor spec"),
    ],
)
async def test_bad_specs_are_400_naming_the_field(
    manager: RunningManager, body: Any, error: str
) -> None:
    response = await manager.client().put("/v1/actors/doubler", body)
    assert response.status == 400
    assert response.body["code"] == "invalid_spec"
    assert response.body["error"].startswith(error)


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "error"),
    [
        ("PUT", "/v1/actors/doubler", b"{not json", 400, "body: malformed JSON"),
        ("PUT", "/v1/actors/doubler", b"", 400, "body: empty; expected a JSON object"),
        (
            "POST",
            "/v1/actors/happy-end/scale",
            b'{"replicas": "many"}',
            400,
            'replicas: expected a whole number from 0 to 1000, or "auto"',
        ),
        ("POST", "/v1/actors/happy-end/scale", b'{"replicas": -1}', 400, "replicas: expected"),
        ("POST", "/v1/agents/node-1/heartbeat", b'{"agent_id": 5}', 400, "agent_id: Input should"),
        (
            "POST",
            "/v1/actors/happy-end/scale",
            b'{"replicas": 3000000000}',
            400,
            "replicas: expected",
        ),
        ("GET", "/v1/actors/a%00b", b"", 400, "name: not a valid name (NUL character"),
        ("GET", "/v1/agents/" + "x" * 300, b"", 400, "agent_id: not a valid name"),
        (
            "PUT",
            "/v1/actors/doubler",
            b'{"handler": "a.b:c", "env": {"X": "\\u0000"}}',
            400,
            "body: NUL characters (\\u0000) are not allowed",
        ),
        ("GET", "/v1/nothing-here", b"", 404, "no route GET /v1/nothing-here"),
        ("PATCH", "/v1/actors/doubler", b"", 405, "Method Not Allowed"),
        ("GET", "/v1/actors/nobody", b"", 404, "actor 'nobody' not found"),
        ("GET", "/v1/agents/nobody", b"", 404, "agent 'nobody' not found"),
        ("GET", "/v1/models/nobody", b"", 404, "model 'nobody' not found"),
    ],
)
async def test_bad_requests_get_json_errors(
    manager: RunningManager, method: str, path: str, raw: bytes, status: int, error: str
) -> None:
    response = await manager.client().request(method, path, raw=raw)
    assert response.status == status
    assert isinstance(response.body, dict)
    assert response.body["error"].startswith(error)


async def test_a_body_above_the_limit_is_413(manager: RunningManager) -> None:
    big = b'{"handler": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await manager.client().request("PUT", "/v1/actors/doubler", raw=big)
    assert response.status == 413
    assert response.body["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("yaml_body", "error"),
    [
        (b'handler: "a.b:c"\nenv: {X: "\\0"}\n', "body: NUL characters (\\u0000) are not allowed"),
        (
            b'handler: "a.b:c"\nenv: {X: "\\ud800"}\n',
            "body: invalid unicode (a lone surrogate) is not allowed",
        ),
        (b"handler: [unclosed\n", "body: malformed YAML"),
    ],
)
async def test_a_yaml_spec_with_unstorable_text_is_400(
    manager: RunningManager, yaml_body: bytes, error: str
) -> None:
    client = manager.client()
    headers = client.headers(
        "PUT", "/v1/actors/doubler", yaml_body, content_type="application/yaml"
    )
    response = await client.request("PUT", "/v1/actors/doubler", raw=yaml_body, headers=headers)
    assert response.status == 400
    assert response.body["error"].startswith(error)


async def test_a_yaml_spec_applies(manager: RunningManager) -> None:
    client = manager.client()
    body = b'handler: "examples.pipeline:double"\nconcurrency: 3\n'
    headers = client.headers("PUT", "/v1/actors/doubler", body, content_type="application/yaml")
    response = await client.request("PUT", "/v1/actors/doubler", raw=body, headers=headers)
    assert (response.status, response.body["created"]) == (201, True)
    assert (await client.get("/v1/actors/doubler")).body["spec"]["concurrency"] == 3


async def test_a_heartbeat_with_unstorable_text_is_cleaned_not_refused(
    manager: RunningManager,
) -> None:
    beat = {
        "agent_id": "node-9",
        "addr": "http://127.0.0.1:1",
        "version": "0.1.0",
        "slots_total": {"cpu": 1},
        "labels": {"zone": "a\u0000b"},
    }
    response = await manager.client().post("/v1/agents/node-9/heartbeat", beat)
    assert response.status == 200
    agent = (await manager.client().get("/v1/agents/node-9")).body
    assert agent["labels"] == {"zone": "ab"}

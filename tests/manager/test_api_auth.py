from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ai.backend.common.auth.hmac_signing import sign_request
from ai.backend.testutils.control_plane import Keypair, RunningManager, SignedClient, create_keypair


def _signed(
    client: SignedClient, method: str, path: str, body: bytes, **kw: object
) -> dict[str, str]:
    return sign_request(
        access_key=client.access_key,
        secret_key=client.secret_key,
        method=method,
        path_with_query=path,
        host=client.endpoint.removeprefix("http://"),
        content_type="application/json",
        body=body,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_valid_signature_is_accepted(manager: RunningManager) -> None:
    response = await manager.client().get("/v1/actors")
    assert response.status == 200
    assert [a["name"] for a in response.body["items"]] == ["error-end", "happy-end"]
    assert response.body["next_cursor"] is None


async def test_health_and_metrics_need_no_signature(manager: RunningManager) -> None:
    async with manager.session.get(manager.endpoint + "/health") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["leader"] is True
    async with manager.session.get(manager.endpoint + "/metrics") as response:
        assert response.status == 200
        assert "backendai_scheduler_leader" in await response.text()


async def test_a_missing_signature_is_401(manager: RunningManager) -> None:
    response = await manager.client().request("GET", "/v1/actors", headers={})
    assert response.status == 401
    assert response.body == {
        "error": "missing Authorization header (sign the request with HMAC)",
        "code": "invalid_signature",
    }


async def test_a_tampered_path_is_401(manager: RunningManager) -> None:
    client = manager.client()
    headers = _signed(client, "GET", "/v1/actors", b"")
    response = await client.request("GET", "/v1/agents", headers=headers)
    assert (response.status, response.body["error"]) == (401, "signature mismatch")


async def test_a_tampered_query_is_401(manager: RunningManager) -> None:
    client = manager.client()
    headers = _signed(client, "GET", "/v1/actors?a=1", b"")
    response = await client.request("GET", "/v1/actors?a=2", headers=headers)
    assert (response.status, response.body["error"]) == (401, "signature mismatch")


async def test_a_tampered_body_is_401(manager: RunningManager) -> None:
    client = manager.client()
    signed_body = b'{"replicas": 1}'
    headers = _signed(client, "POST", "/v1/actors/happy-end/scale", signed_body)
    response = await client.request(
        "POST", "/v1/actors/happy-end/scale", raw=b'{"replicas": 9}', headers=headers
    )
    assert (response.status, response.body["error"]) == (401, "signature mismatch")


async def test_a_tampered_date_is_401(manager: RunningManager) -> None:
    client = manager.client()
    headers = _signed(client, "GET", "/v1/actors", b"")
    later = (datetime.fromisoformat(headers["X-BackendAI-Date"]) + timedelta(seconds=5)).isoformat()
    response = await client.request(
        "GET", "/v1/actors", headers={**headers, "X-BackendAI-Date": later, "Date": later}
    )
    assert (response.status, response.body["error"]) == (401, "signature mismatch")


async def test_an_unknown_key_is_401(manager: RunningManager) -> None:
    client = manager.client(Keypair("AKIANOSUCHKEY", "whatever"))
    response = await client.get("/v1/actors")
    assert response.status == 401
    assert response.body["error"] == "unknown or inactive access key 'AKIANOSUCHKEY'"


async def test_a_skewed_clock_is_401(manager: RunningManager) -> None:
    client = manager.client()
    stale = datetime.now(UTC) - timedelta(minutes=20)
    headers = _signed(client, "GET", "/v1/actors", b"", now=stale)
    response = await client.request("GET", "/v1/actors", headers=headers)
    assert response.status == 401
    assert response.body["error"].startswith("request date is 1200 s away from the server's clock")


async def test_a_user_on_an_admin_route_is_403(manager: RunningManager) -> None:
    user = manager.client(create_keypair(manager.database_url))
    response = await user.get("/v1/admin/keypairs")
    assert response.status == 403
    assert response.body == {"error": "this route needs an admin keypair", "code": "admin_required"}
    assert (await user.get("/v1/actors")).status == 200


async def test_an_agent_keypair_only_sends_heartbeats(manager: RunningManager) -> None:
    agent = manager.client(create_keypair(manager.database_url, "--role", "agent"))
    response = await agent.get("/v1/actors")
    assert response.status == 403
    assert response.body["code"] == "role_not_allowed"
    user = manager.client(create_keypair(manager.database_url))
    beat = await user.post("/v1/agents/node-1/heartbeat", {})
    assert beat.status == 403
    assert beat.body["error"] == "heartbeats need a keypair of role agent"


async def test_admins_create_list_and_delete_keypairs(manager: RunningManager) -> None:
    admin = manager.client()
    created = await admin.post("/v1/admin/keypairs", {"user_name": "alice"})
    assert created.status == 201
    assert (created.body["user_name"], created.body["role"], created.body["is_admin"]) == (
        "alice",
        "user",
        False,
    )
    alice = manager.client(Keypair(created.body["access_key"], created.body["secret_key"]))
    assert (await alice.get("/v1/actors")).status == 200
    listed = await admin.get("/v1/admin/keypairs")
    assert "secret_key" not in listed.body["items"][0]
    assert created.body["access_key"] in [k["access_key"] for k in listed.body["items"]]
    assert (await admin.delete(f"/v1/admin/keypairs/{created.body['access_key']}")).status == 204
    assert (await alice.get("/v1/actors")).status == 401
    again = await admin.delete(f"/v1/admin/keypairs/{created.body['access_key']}")
    assert again.status == 404
    bad = await admin.post("/v1/admin/keypairs", {"user_name": "bob", "role": "root"})
    assert bad.status == 400
    assert bad.body["error"].startswith(
        "role: Input should be 'user', 'admin', 'agent' or 'gateway'"
    )


async def test_a_credential_with_strange_characters_is_401(manager: RunningManager) -> None:
    client = manager.client()
    headers = _signed(client, "GET", "/v1/actors", b"")
    forged = "BackendAI signMethod=HMAC-SHA256, credential=AK\udce9:00ff"
    response = await client.request(
        "GET",
        "/v1/actors",
        headers={
            **headers,
            "Authorization": forged.encode("utf-8", "surrogateescape").decode("latin-1"),
        },
    )
    assert response.status == 401
    assert response.body["error"].startswith("malformed Authorization header")

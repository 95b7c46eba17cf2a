from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ai.backend.testutils.control_plane import Keypair, RunningManager, SignedClient, create_keypair
from ai.backend.testutils.spawn import run_module

TOKEN_INFO_KEYS = {"id", "access_key", "name", "created_at", "expires_at"}


def _mgr(database_url: str, *args: str) -> tuple[int, str, str]:
    """``./backend.ai mgr ARGS…`` as a user runs it: exit status, stdout, stderr."""
    done = run_module("ai.backend.cli", ["mgr", *args], env={"BACKEND_DB__URL": database_url})
    return done.returncode, done.stdout, done.stderr


async def test_admins_create_list_and_delete_api_tokens(manager: RunningManager) -> None:
    admin = manager.client()
    created = await admin.post(
        "/v1/admin/tokens", {"access_key": manager.admin.access_key, "name": "ci"}
    )
    assert created.status == 201
    assert set(created.body) == TOKEN_INFO_KEYS | {"token"}
    assert (created.body["access_key"], created.body["name"], created.body["expires_at"]) == (
        manager.admin.access_key,
        "ci",
        None,
    )
    assert created.body["token"].startswith("bai_")
    assert len(created.body["token"]) == len("bai_") + 43  # 32 bytes, URL-safe base64

    listed = await admin.get("/v1/admin/tokens")
    assert listed.status == 200
    assert listed.body == {
        "items": [{key: created.body[key] for key in TOKEN_INFO_KEYS}],
        "next_cursor": None,
    }

    deleted = await admin.delete(f"/v1/admin/tokens/{created.body['id']}")
    assert (deleted.status, deleted.body) == (204, None)
    assert (await admin.get("/v1/admin/tokens")).body == {"items": [], "next_cursor": None}
    again = await admin.delete(f"/v1/admin/tokens/{created.body['id']}")
    assert (again.status, again.body) == (
        404,
        {"error": f"API token {created.body['id']!r} not found", "code": "token_not_found"},
    )


async def test_a_token_is_stored_only_as_its_sha256(
    manager: RunningManager, db_engine: AsyncEngine
) -> None:
    created = await manager.client().post(
        "/v1/admin/tokens", {"access_key": manager.admin.access_key}
    )
    async with db_engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM api_tokens"))).mappings().all()
    assert len(rows) == 1
    token = created.body["token"]
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in [str(value) for value in rows[0].values()]


async def test_a_token_expires_after_expires_in(manager: RunningManager) -> None:
    created = await manager.client().post(
        "/v1/admin/tokens", {"access_key": manager.admin.access_key, "expires_in": "30d"}
    )
    assert created.status == 201
    created_at = datetime.fromisoformat(created.body["created_at"])
    expires_at = datetime.fromisoformat(created.body["expires_at"])
    assert expires_at - created_at == timedelta(days=30)


async def test_a_token_for_an_unknown_access_key_is_404(manager: RunningManager) -> None:
    response = await manager.client().post("/v1/admin/tokens", {"access_key": "AKIANOSUCHKEY"})
    assert (response.status, response.body) == (
        404,
        {"error": "access_key: keypair 'AKIANOSUCHKEY' not found", "code": "keypair_not_found"},
    )


async def test_a_bad_token_request_is_400_naming_the_field(manager: RunningManager) -> None:
    admin = manager.client()
    zero = await admin.post(
        "/v1/admin/tokens", {"access_key": manager.admin.access_key, "expires_in": "0s"}
    )
    assert (zero.status, zero.body) == (
        400,
        {"error": "expires_in: must be above 0 and at most 3650 days", "code": "invalid_input"},
    )
    unknown = await admin.post(
        "/v1/admin/tokens", {"access_key": manager.admin.access_key, "scope": "all"}
    )
    assert (unknown.status, unknown.body) == (
        400,
        {"error": "scope: unknown key", "code": "invalid_input"},
    )


async def test_a_user_may_not_manage_tokens(manager: RunningManager) -> None:
    user = manager.client(create_keypair(manager.database_url))
    forbidden = {"error": "this route needs an admin keypair", "code": "admin_required"}
    created = await user.post("/v1/admin/tokens", {"access_key": user.access_key})
    assert (created.status, created.body) == (403, forbidden)
    listed = await user.get("/v1/admin/tokens")
    assert (listed.status, listed.body) == (403, forbidden)
    deleted = await user.delete("/v1/admin/tokens/tok-0000000000000000")
    assert (deleted.status, deleted.body) == (403, forbidden)


async def test_a_gateway_keypair_only_reads_the_model_registry(manager: RunningManager) -> None:
    gateway: SignedClient = manager.client(
        create_keypair(manager.database_url, "--role", "gateway")
    )
    models = await gateway.get("/v1/models")
    assert (models.status, models.body) == (200, {"items": [], "next_cursor": None})
    model = await gateway.get("/v1/models/resnet")
    assert (model.status, model.body) == (
        404,
        {"error": "model 'resnet' not found", "code": "model_not_found"},
    )
    refused = {
        "error": "a gateway keypair may only read the model registry",
        "code": "role_not_allowed",
    }
    for path in ("/v1/actors", "/v1/actors/happy-end", "/v1/agents"):
        response = await gateway.get(path)
        assert (path, response.status, response.body) == (path, 403, refused)
    scale = await gateway.post("/v1/actors/happy-end/scale", {"replicas": 2})
    assert (scale.status, scale.body) == (403, refused)
    beat = await gateway.post("/v1/agents/node-1/heartbeat", {})
    assert (beat.status, beat.body["code"]) == (403, "role_not_allowed")
    admin_route = await gateway.get("/v1/admin/tokens")
    assert (admin_route.status, admin_route.body["code"]) == (403, "admin_required")


async def test_the_cli_creates_a_token_once_and_lists_it(database_url: str) -> None:
    keys: Keypair = create_keypair(database_url, "--role", "gateway")
    status, out, err = _mgr(
        database_url,
        "token",
        "create",
        "--access-key",
        keys.access_key,
        "--name",
        "gw-1",
        "--expires-in",
        "30d",
        "--json",
    )
    assert status == 0, err
    created: dict[str, Any] = json.loads(out)
    assert set(created) == TOKEN_INFO_KEYS | {"token"}
    assert (created["access_key"], created["name"]) == (keys.access_key, "gw-1")
    assert created["token"].startswith("bai_")
    expires_in = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert expires_in == timedelta(days=30)

    status, out, err = _mgr(database_url, "token", "list", "--json")
    assert status == 0, err
    assert json.loads(out) == [{key: created[key] for key in TOKEN_INFO_KEYS}]
    assert created["token"] not in out

    status, out, err = _mgr(database_url, "token", "create", "--access-key", keys.access_key)
    assert status == 0, err
    assert out.splitlines()[0].startswith("token: bai_")


async def test_the_cli_refuses_a_token_for_an_unknown_access_key(database_url: str) -> None:
    status, out, err = _mgr(database_url, "token", "create", "--access-key", "AKIANOSUCHKEY")
    assert (status, out) == (1, "")
    assert err == "Error: access_key: keypair 'AKIANOSUCHKEY' not found\n"

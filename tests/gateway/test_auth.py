"""The gateway's authentication (``AuthService`` + ``auth_middleware``) in a small aiohttp app
against a migrated database: Bearer API tokens, HMAC signatures, the modes, and the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.common.auth.hmac_signing import SignedParts
from ai.backend.common.dto.gateway_api import ApiTokenCreated
from ai.backend.common.dto.manager_api import KeypairCreated, KeypairRoleName
from ai.backend.common.web import error_middleware, json_response
from ai.backend.gateway.api.context import CONTEXT_KEY, GatewayContext, caller
from ai.backend.gateway.api.middlewares import auth_middleware
from ai.backend.gateway.config import AuthMode, GatewayAuthConfig
from ai.backend.gateway.errors import Unauthorized
from ai.backend.gateway.repositories.credentials import CredentialRepository
from ai.backend.gateway.services.auth import AuthService
from ai.backend.manager.repositories.api_tokens import ApiTokenRepository
from ai.backend.manager.repositories.keypairs import KeypairRepository
from ai.backend.manager.services.api_tokens import ApiTokenService
from ai.backend.testutils.control_plane import ApiResponse, SignedClient
from ai.backend.testutils.waiting import wait_until

ANYONE = {"access_key": None, "role": "admin", "is_admin": True}


async def _whoami(request: web.Request) -> web.Response:
    who = caller(request)
    return json_response({"access_key": who.access_key, "role": who.role, "is_admin": who.is_admin})


async def _echo(request: web.Request) -> web.Response:
    return json_response({"body": (await request.read()).decode()})


async def _health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def _app(auth: AuthService) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    # the middleware reaches only ``auth`` of the context; the other services stay out
    app[CONTEXT_KEY] = cast(GatewayContext, SimpleNamespace(auth=auth))
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/whoami", _whoami)
    app.router.add_post("/v1/echo", _echo)
    return app


@dataclass
class AuthApp:
    """The test app on a free port: sign with a keypair, or send a Bearer token."""

    endpoint: str
    session: aiohttp.ClientSession
    auth: AuthService

    def signed(self, keys: KeypairCreated, *, secret_key: str | None = None) -> SignedClient:
        return self.client(keys.access_key, secret_key or keys.secret_key)

    def client(self, access_key: str = "", secret_key: str = "") -> SignedClient:
        return SignedClient(self.session, self.endpoint, access_key, secret_key)

    async def bearer(self, token: str, path: str = "/v1/whoami", body: Any = None) -> ApiResponse:
        method = "GET" if body is None else "POST"
        headers = {"Authorization": f"Bearer {token}"}
        return await self.client().request(method, path, body, headers=headers)

    async def unsigned(self, path: str, headers: dict[str, str]) -> ApiResponse:
        return await self.client().request("GET", path, headers=headers)


StartApp = Callable[..., Awaitable[AuthApp]]


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(db_engine, expire_on_commit=False)


@pytest.fixture
async def start_app(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[StartApp]:
    """Start the test app with ``mode`` and ``cache_ttl`` (seconds); stopped afterwards."""
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def start(mode: AuthMode = AuthMode.TOKEN, cache_ttl: float = 5.0) -> AuthApp:
        config = GatewayAuthConfig(mode=mode, cache_ttl=timedelta(seconds=cache_ttl))
        auth = AuthService(CredentialRepository(sessions), config)
        server = TestServer(_app(auth))
        await server.start_server()
        servers.append(server)
        return AuthApp(str(server.make_url("")).rstrip("/"), session, auth)

    yield start
    await session.close()
    for server in servers:
        await server.close()


@pytest.fixture
def keypairs(sessions: async_sessionmaker[AsyncSession]) -> KeypairRepository:
    return KeypairRepository(sessions)


@pytest.fixture
def tokens(sessions: async_sessionmaker[AsyncSession]) -> ApiTokenService:
    return ApiTokenService(ApiTokenRepository(sessions))


async def _keypair(keypairs: KeypairRepository, role: KeypairRoleName = "user") -> KeypairCreated:
    return await keypairs.create(user_name=f"test-{role}", role=role)


async def _token(tokens: ApiTokenService, keys: KeypairCreated, **fields: Any) -> ApiTokenCreated:
    return await tokens.create({"access_key": keys.access_key, **fields})


def _me(keys: KeypairCreated) -> dict[str, Any]:
    return {"access_key": keys.access_key, "role": keys.role, "is_admin": keys.is_admin}


def _unauthorized(message: str) -> tuple[int, dict[str, str]]:
    return 401, {"error": message, "code": "unauthorized"}


def _result(response: ApiResponse) -> tuple[int, Any]:
    return response.status, response.body


async def test_a_bearer_token_calls_as_its_keypair(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app()
    alice = await _keypair(keypairs)
    token = await _token(tokens, alice, name="alice's laptop")
    assert _result(await app.bearer(token.token)) == (200, _me(alice))
    admin = await _keypair(keypairs, "admin")
    assert _result(await app.bearer((await _token(tokens, admin)).token)) == (200, _me(admin))


async def test_a_bearer_requests_body_is_left_to_the_handler(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app()
    token = await _token(tokens, await _keypair(keypairs))
    response = await app.bearer(token.token, "/v1/echo", {"value": 1})
    assert _result(response) == (200, {"body": '{"value":1}'})


async def test_an_expired_token_is_401(
    start_app: StartApp,
    keypairs: KeypairRepository,
    tokens: ApiTokenService,
    db_engine: AsyncEngine,
) -> None:
    app = await start_app()
    token = await _token(tokens, await _keypair(keypairs), expires_in="1h")
    async with db_engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
        )
    response = await app.bearer(token.token)
    assert _result(response) == _unauthorized("unknown, revoked or expired API token")


async def test_a_cached_token_is_refused_once_it_expires(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app(cache_ttl=3600)
    token = await _token(tokens, await _keypair(keypairs), expires_in="1h")
    assert token.expires_at is not None
    parts = SignedParts("GET", "/v1/whoami", "", "gateway", "", "", b"")
    header = f"Bearer {token.token}"
    now = datetime.now(UTC)
    who = await app.auth.authenticate(authorization=header, parts=parts, now=now)
    assert who.access_key == token.access_key
    later = token.expires_at + timedelta(seconds=1)
    expected = f"API token expired at {token.expires_at.isoformat()}"
    with pytest.raises(Unauthorized) as refused:
        await app.auth.authenticate(authorization=header, parts=parts, now=later)
    assert refused.value.message == expected


async def test_a_token_of_a_deleted_or_inactive_keypair_is_401(
    start_app: StartApp,
    keypairs: KeypairRepository,
    tokens: ApiTokenService,
    db_engine: AsyncEngine,
) -> None:
    app = await start_app()
    deleted, inactive = await _keypair(keypairs), await _keypair(keypairs)
    deleted_token = await _token(tokens, deleted)
    inactive_token = await _token(tokens, inactive)
    assert await keypairs.delete(deleted.access_key)
    async with db_engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE keypairs SET is_active = false WHERE access_key = :key"),
            {"key": inactive.access_key},
        )
    refused = _unauthorized("unknown, revoked or expired API token")
    assert _result(await app.bearer(deleted_token.token)) == refused
    assert _result(await app.bearer(inactive_token.token)) == refused
    # the deleted keypair took its token with it
    assert [t.id for t in await tokens.list_all()] == [inactive_token.id]


async def test_an_hmac_signature_calls_as_its_keypair(
    start_app: StartApp, keypairs: KeypairRepository
) -> None:
    app = await start_app()
    bob = await _keypair(keypairs)
    client = app.signed(bob)
    assert _result(await client.get("/v1/whoami")) == (200, _me(bob))
    assert _result(await client.post("/v1/echo", {"value": 2})) == (200, {"body": '{"value":2}'})


async def test_a_wrong_signature_is_401_even_with_the_secret_cached(
    start_app: StartApp, keypairs: KeypairRepository
) -> None:
    app = await start_app(cache_ttl=3600)
    bob = await _keypair(keypairs)
    assert (await app.signed(bob).get("/v1/whoami")).status == 200
    forged = app.signed(bob, secret_key="not-the-secret")
    assert _result(await forged.get("/v1/whoami")) == _unauthorized("signature mismatch")
    tampered = app.signed(bob).headers("GET", "/v1/whoami", b"")
    response = await app.signed(bob).request("POST", "/v1/echo", {"x": 1}, headers=tampered)
    assert _result(response) == _unauthorized("signature mismatch")


async def test_an_unknown_access_key_is_401(start_app: StartApp) -> None:
    app = await start_app()
    response = await app.client("AKIANOSUCHKEY", "whatever").get("/v1/whoami")
    assert _result(response) == _unauthorized("unknown or inactive access key 'AKIANOSUCHKEY'")


async def test_missing_or_malformed_credentials_are_401_saying_what_is_wrong(
    start_app: StartApp,
) -> None:
    app = await start_app()
    assert _result(await app.unsigned("/v1/whoami", {})) == _unauthorized(
        "missing Authorization header (authenticate with 'Bearer <token>' or an HMAC signature)"
    )
    assert _result(await app.unsigned("/v1/whoami", {"Authorization": "Bearer"})) == (
        _unauthorized("empty Bearer token")
    )
    basic = await app.unsigned("/v1/whoami", {"Authorization": "Basic YTpi"})
    assert _result(basic) == _unauthorized(
        "malformed Authorization header: expected"
        " 'BackendAI signMethod=HMAC-SHA256, credential=<access_key>:<signature>',"
        " or 'Bearer <token>'"
    )
    undated = await app.unsigned(
        "/v1/whoami", {"Authorization": "BackendAI signMethod=HMAC-SHA256, credential=AK:00"}
    )
    assert _result(undated) == _unauthorized("missing Date / X-BackendAI-Date header")
    assert _result(await app.bearer("bai_nosuchtoken")) == _unauthorized(
        "unknown, revoked or expired API token"
    )


async def test_public_paths_need_no_credentials(start_app: StartApp) -> None:
    app = await start_app()
    assert _result(await app.unsigned("/health", {})) == (200, {"status": "ok"})


async def test_mode_hmac_refuses_bearer_tokens(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app(AuthMode.HMAC)
    carol = await _keypair(keypairs)
    token = await _token(tokens, carol)
    assert _result(await app.bearer(token.token)) == _unauthorized(
        "Bearer tokens are not accepted here (auth.mode = hmac): sign the request with HMAC"
    )
    assert _result(await app.unsigned("/v1/whoami", {})) == _unauthorized(
        "missing Authorization header (authenticate with HMAC)"
    )
    assert _result(await app.signed(carol).get("/v1/whoami")) == (200, _me(carol))


async def test_mode_none_lets_every_caller_in_as_admin(
    start_app: StartApp, keypairs: KeypairRepository
) -> None:
    app = await start_app(AuthMode.NONE)
    assert _result(await app.unsigned("/v1/whoami", {})) == (200, ANYONE)
    assert _result(await app.bearer("bai_anything")) == (200, ANYONE)
    agent = await _keypair(keypairs, "agent")
    assert _result(await app.signed(agent).get("/v1/whoami")) == (200, ANYONE)


async def test_machine_keypairs_are_403(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app()
    roles: tuple[KeypairRoleName, ...] = ("agent", "gateway")
    for role in roles:
        keys = await _keypair(keypairs, role)
        forbidden = (
            403,
            {"error": f"a keypair of role {role} may not call the gateway", "code": "forbidden"},
        )
        assert _result(await app.signed(keys).get("/v1/whoami")) == forbidden
        assert _result(await app.bearer((await _token(tokens, keys)).token)) == forbidden


async def test_a_verified_token_is_trusted_for_cache_ttl(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app(cache_ttl=3600)
    dave = await _keypair(keypairs)
    token = await _token(tokens, dave)
    assert (await app.bearer(token.token)).status == 200
    await tokens.delete(token.id)
    assert _result(await app.bearer(token.token)) == (200, _me(dave))


async def test_a_deleted_token_stops_working_after_cache_ttl(
    start_app: StartApp, keypairs: KeypairRepository, tokens: ApiTokenService
) -> None:
    app = await start_app(cache_ttl=0.2)
    token = await _token(tokens, await _keypair(keypairs))
    assert (await app.bearer(token.token)).status == 200
    await tokens.delete(token.id)

    async def refused() -> ApiResponse | None:
        response = await app.bearer(token.token)
        return response if response.status != 200 else None

    response = await wait_until(refused, what="the deleted token to be refused", timeout=10)
    assert _result(response) == _unauthorized("unknown, revoked or expired API token")

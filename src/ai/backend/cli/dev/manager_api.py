"""The few signed calls the dev stack makes to the manager (DESIGN.md §6): apply an actor, and
read actors and their replicas for ``dev status``. (The client SDK does the same for users; the
dev stack signs with the common signer so that it depends on nothing above it.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from ai.backend.common.auth.hmac_signing import sign_request
from ai.backend.common.dto.manager_api import ActorInfo, ActorSummary, ApplyResult
from ai.backend.common.json import dumps, loads

from .record import KeypairRecord

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
BODY_SHOWN = 200  # characters of an unexpected answer shown in an error


class ManagerApiError(Exception):
    """The manager answered, but not with what was asked for: an error status, or a body that
    is not the expected JSON."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class ManagerUnreachable(Exception):
    """Nothing answered at the manager's URL (refused, reset, timed out)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"the manager at {endpoint} did not answer ({reason})")
        self.endpoint = endpoint
        self.reason = reason


class ManagerApi:
    def __init__(
        self, session: aiohttp.ClientSession, endpoint: str, keypair: KeypairRecord
    ) -> None:
        self._session = session
        self._endpoint = endpoint.rstrip("/")
        self._keypair = keypair

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = b"" if body is None else dumps(body)
        headers = sign_request(
            access_key=self._keypair.access_key,
            secret_key=self._keypair.secret_key,
            method=method,
            path_with_query=path,
            host=urlsplit(self._endpoint).netloc,
            content_type="application/json",
            body=data,
        )
        try:
            async with self._session.request(
                method, self._endpoint + path, data=data, headers=headers, timeout=REQUEST_TIMEOUT
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise ManagerUnreachable(self._endpoint, str(e) or type(e).__name__) from None
        try:
            answer = loads(raw) if raw else None
        except ValueError:
            text = raw.decode(errors="replace").strip()[:BODY_SHOWN]
            raise ManagerApiError(status, f"not JSON: {text!r}") from None
        if status >= 400:
            raise ManagerApiError(status, answer)
        return answer

    async def apply_actor(self, spec: dict[str, Any]) -> ApplyResult:
        answer = await self._request("PUT", f"/v1/actors/{spec['name']}", spec)
        try:
            return ApplyResult.model_validate(answer)
        except ValidationError:
            raise ManagerApiError(200, f"not an apply result: {str(answer)[:BODY_SHOWN]}") from None

    async def list_actors(self) -> list[ActorSummary]:
        answer = await self._request("GET", "/v1/actors")
        items = answer["items"] if isinstance(answer, dict) else answer
        return [ActorSummary.model_validate(item) for item in items]

    async def get_actor(self, name: str) -> ActorInfo:
        return ActorInfo.model_validate(await self._request("GET", f"/v1/actors/{name}"))

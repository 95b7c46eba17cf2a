"""The manager's REST API as the agent uses it: one signed heartbeat (DESIGN.md §6)."""

from __future__ import annotations

import json
import logging

import aiohttp
from pydantic import ValidationError

from ai.backend.common.auth.hmac_signing import EndpointSigner
from ai.backend.common.dto.agent import SYSTEM_CONTEXT, AgentHeartbeat, HeartbeatReply
from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

CONTENT_TYPE = "application/json"
REQUEST_TIMEOUT = 10.0
ERROR_BODY_LIMIT = 300


class ManagerUnavailable(Exception):
    """The heartbeat got no usable answer (the message says why; no payload in it)."""


class ManagerClient:
    def __init__(
        self,
        *,
        api: str,
        access_key: str | None,
        secret_key: str | None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._signer = EndpointSigner(api, access_key, secret_key)
        self.api = self._signer.api
        self.access_key = access_key
        self.secret_key = secret_key
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return self._signer.headers(method, path, body, CONTENT_TYPE)

    async def heartbeat(self, heartbeat: AgentHeartbeat) -> HeartbeatReply:
        """Send the heartbeat; the replicas the manager wants here. Raises
        :class:`ManagerUnavailable` on any failure."""
        path = f"/v1/agents/{heartbeat.agent_id}/heartbeat"
        body = heartbeat.model_dump_json().encode()
        try:
            async with self._session.post(
                self.api + path, data=body, headers=self._headers("POST", path, body)
            ) as response:
                text = await response.text()
                if response.status != 200:
                    raise ManagerUnavailable(
                        f"the manager answered {response.status}: {text[:ERROR_BODY_LIMIT]}"
                    )
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = str(e) or type(e).__name__
            raise ManagerUnavailable(f"cannot reach the manager at {self.api}: {reason}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ManagerUnavailable(f"the manager's reply is not JSON: {e}") from None
        try:
            return HeartbeatReply.model_validate(data, context=SYSTEM_CONTEXT)
        except ValidationError as e:
            raise ManagerUnavailable(
                f"the manager's reply is not a heartbeat reply: {summarize_validation_error(e)}"
            ) from None

    async def close(self) -> None:
        await self._session.close()

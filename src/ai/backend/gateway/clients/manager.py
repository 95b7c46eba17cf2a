"""The manager's REST API as the gateway uses it: the model registry (``GET /v1/models``),
signed with the gateway's keypair (``[manager] access_key / secret_key``, role ``gateway``)."""

from __future__ import annotations

import aiohttp
from pydantic import TypeAdapter, ValidationError

from ai.backend.common.auth.hmac_signing import EndpointSigner
from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.dto.manager_api import ModelInfo

CONTENT_TYPE = "application/json"
REQUEST_TIMEOUT = 10.0
ERROR_BODY_LIMIT = 300

_MODEL_PAGE = TypeAdapter(dict[str, list[ModelInfo] | str | None])
_MODELS = TypeAdapter(list[ModelInfo])


class ManagerUnavailable(Exception):
    """The manager gave no usable answer; the message says why."""


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
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self, method: str, path: str) -> dict[str, str]:
        return self._signer.headers(method, path, b"", CONTENT_TYPE)

    async def list_models(self) -> list[ModelInfo]:
        """Every registered model version; :class:`ManagerUnavailable` on any failure."""
        path = "/v1/models"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(
                self.api + path, headers=self._headers("GET", path)
            ) as response:
                body = await response.read()
                if response.status != 200:
                    text = body[:ERROR_BODY_LIMIT].decode(errors="replace")
                    raise ManagerUnavailable(f"the manager answered {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = str(e) or type(e).__name__
            raise ManagerUnavailable(f"cannot reach the manager at {self.api}: {reason}") from None
        try:
            page = _MODEL_PAGE.validate_json(body)
            return _MODELS.validate_python(page.get("items") or [])
        except ValidationError as e:
            raise ManagerUnavailable(
                f"the manager's model list is malformed: {summarize_validation_error(e)}"
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

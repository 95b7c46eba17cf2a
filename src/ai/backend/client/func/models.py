"""Models: the KServe registry (manager ``/v1/models``) and inference through the gateway's
KServe v2 REST API (``/v2/models/{name}[/versions/{version}]/infer``)."""

from __future__ import annotations

import builtins
from typing import Any

from ai.backend.common.dto.manager_api import ModelInfo

from ..exceptions import BackendClientError
from ..transport import ServiceEndpoint, parse_items, path_segment


class Models:
    def __init__(self, manager: ServiceEndpoint, gateway: ServiceEndpoint) -> None:
        self._manager = manager
        self._gateway = gateway

    async def list(self) -> builtins.list[ModelInfo]:
        """Every registered model version (name, version, the actor serving it)."""
        answer = await self._manager.get("/v1/models")
        return parse_items(ModelInfo, answer, what="model list")

    async def infer(
        self,
        name: str,
        inputs: builtins.list[dict[str, Any]],
        *,
        version: str | None = None,
        parameters: dict[str, Any] | None = None,
        outputs: builtins.list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """One KServe v2 inference; ``inputs`` are tensors as JSON
        (``{"name", "datatype", "shape", "data"}``). Returns the v2 response body
        (``model_name``, ``model_version``, ``outputs``, …)."""
        path = f"/v2/models/{path_segment(name)}"
        if version is not None:
            path += f"/versions/{path_segment(version)}"
        body: dict[str, Any] = {"inputs": inputs}
        if request_id is not None:
            body["id"] = request_id
        if parameters is not None:
            body["parameters"] = parameters
        if outputs is not None:
            body["outputs"] = outputs
        _, answer = await self._gateway.call("POST", f"{path}/infer", body=body)
        if not isinstance(answer, dict):
            raise BackendClientError(f"unexpected inference response from the server: {answer!r}")
        return answer

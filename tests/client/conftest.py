"""Fixtures of the SDK's tests: a client configuration of the test alone (no user's
``client.toml``, no ``BACKEND_*`` variables), and the platform the SDK talks to: a manager, an
agent and a gateway that authenticates callers (``auth.mode = token``: HMAC is checked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ai.backend.client import ClientConfig
from ai.backend.client.config import CONFIG_PATH_VARIABLE, ENVIRONMENT_KEYS
from ai.backend.testutils.control_plane import Cluster, insert_keypair
from ai.backend.testutils.gateway import gateway_for, write_tools


@pytest.fixture(autouse=True)
def isolated_client_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Where this test's ``client.toml`` would be (``$XDG_CONFIG_HOME`` in the test's folder;
    nothing there yet)."""
    for variable in [*ENVIRONMENT_KEYS, CONFIG_PATH_VARIABLE]:
        monkeypatch.delenv(variable, raising=False)
    config_home = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    yield config_home / "backend.ai" / "client.toml"


@pytest.fixture
async def platform_config(cluster: Cluster, tmp_path: Path) -> ClientConfig:
    """An agent ``node-1`` and a gateway with the test tools (``double``,
    ``double_then_increment``) that checks HMAC signatures and reads the model registry; the
    client configuration of both endpoints with the admin keypair."""
    await cluster.add_agent("node-1")
    registry_reader = await insert_keypair(cluster.manager.database_url, "gateway")
    gateway = await gateway_for(
        cluster,
        write_tools(tmp_path / "tools.yaml"),
        auth_mode="token",
        extra={
            "BACKEND_MANAGER__API": cluster.manager.endpoint,
            "BACKEND_MANAGER__ACCESS_KEY": registry_reader.access_key,
            "BACKEND_MANAGER__SECRET_KEY": registry_reader.secret_key,
        },
    )
    admin = cluster.manager.admin
    return ClientConfig(
        endpoint=cluster.manager.endpoint,
        gateway_endpoint=gateway.url,
        access_key=admin.access_key,
        secret_key=admin.secret_key,
    )

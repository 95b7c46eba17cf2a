"""ClientConfig.load(): environment > client.toml > defaults, and the file's location."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.backend.client import ClientConfig
from ai.backend.client.config import client_config_path
from ai.backend.client.exceptions import ClientConfigError

DEV_TOML = """
[client]
endpoint = "http://127.0.0.1:18081/"
gateway_endpoint = "http://127.0.0.1:18090"
access_key = "AKFILE"
secret_key = "file-secret"
"""


def test_defaults_without_file_or_environment(isolated_client_config: Path) -> None:
    config = ClientConfig.load()
    assert config.model_dump() == {
        "endpoint": "http://127.0.0.1:8081",
        "gateway_endpoint": "http://127.0.0.1:8090",
        "access_key": None,
        "secret_key": None,
    }
    assert config.source_file is None
    assert client_config_path() == isolated_client_config


def test_the_file_written_by_dev_up_is_read(isolated_client_config: Path) -> None:
    isolated_client_config.parent.mkdir(parents=True)
    isolated_client_config.write_text(DEV_TOML)
    config = ClientConfig.load()
    assert config.model_dump() == {
        "endpoint": "http://127.0.0.1:18081",
        "gateway_endpoint": "http://127.0.0.1:18090",
        "access_key": "AKFILE",
        "secret_key": "file-secret",
    }
    assert config.source_file == isolated_client_config
    assert "file-secret" not in repr(config)


def test_the_environment_wins_over_the_file(
    isolated_client_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolated_client_config.parent.mkdir(parents=True)
    isolated_client_config.write_text(DEV_TOML)
    monkeypatch.setenv("BACKEND_ENDPOINT", "https://manager.example.com:8443")
    monkeypatch.setenv("BACKEND_SECRET_KEY", "env-secret")
    monkeypatch.setenv("BACKEND_ACCESS_KEY", "")  # empty: unset
    config = ClientConfig.load()
    assert config.model_dump() == {
        "endpoint": "https://manager.example.com:8443",
        "gateway_endpoint": "http://127.0.0.1:18090",
        "access_key": "AKFILE",
        "secret_key": "env-secret",
    }


def test_backend_client_config_names_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(DEV_TOML)
    monkeypatch.setenv("BACKEND_CLIENT_CONFIG", str(elsewhere))
    assert client_config_path() == elsewhere
    assert ClientConfig.load().access_key == "AKFILE"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("BACKEND_CLIENT_CONFIG")
    assert client_config_path() == Path.home() / ".config" / "backend.ai" / "client.toml"


def test_bad_values_name_their_source(
    isolated_client_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKEND_GATEWAY_ENDPOINT", "127.0.0.1:8090")
    with pytest.raises(ClientConfigError) as bad_env:
        ClientConfig.load()
    assert str(bad_env.value) == (
        "invalid client configuration: gateway_endpoint (from BACKEND_GATEWAY_ENDPOINT):"
        " expected an http(s) URL like http://127.0.0.1:8081, got '127.0.0.1:8090'"
    )
    isolated_client_config.parent.mkdir(parents=True)
    isolated_client_config.write_text("[client\nendpoint = 1\n")
    with pytest.raises(ClientConfigError) as bad_file:
        ClientConfig.load()
    assert str(bad_file.value).startswith(
        f"{isolated_client_config}: cannot read the client configuration: "
    )
    isolated_client_config.write_text("client = 3\n")
    with pytest.raises(ClientConfigError) as not_a_table:
        ClientConfig.load()
    assert str(not_a_table.value) == f"{isolated_client_config}: [client] must be a table"

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from ai.backend.common.config.loader import (
    ConfigSource,
    LoadedConfig,
    SecretKind,
    load_config,
    mask_url_password,
)
from ai.backend.common.config.sections import ConfigSection, ServiceConfig
from ai.backend.common.errors import ConfigurationError
from ai.backend.gateway.config import GatewayConfig
from ai.backend.manager.config import ManagerConfig

# a service name no config file on this machine is named after
NO_FILE_SERVICE = "test-service-without-file"


class TagsSection(ConfigSection):
    names: list[str] = Field(default_factory=list)
    limits: dict[str, int] = Field(default_factory=dict)


class TaggedConfig(ServiceConfig):
    tags: TagsSection = Field(default_factory=TagsSection)


@pytest.fixture
def manager_toml(tmp_path: Path) -> Path:
    path = tmp_path / "manager.toml"
    path.write_text(
        "[db]\n"
        'url = "postgresql+asyncpg://postgres@127.0.0.1:5432/from_file"\n'
        "pool_size = 3\n"
        "[scheduler]\n"
        'agent_timeout = "45s"\n'
    )
    return path


def entry_map(loaded: LoadedConfig[Any]) -> dict[str, tuple[object, ConfigSource, str]]:
    return {e.key: (e.value, e.source, e.origin) for e in loaded.entries()}


def test_defaults_when_no_file_and_no_environment() -> None:
    loaded = load_config(ManagerConfig, service=NO_FILE_SERVICE, environ={})
    assert loaded.file is None
    assert loaded.config.db.url == "postgresql+asyncpg://postgres@127.0.0.1:5432/backend"
    assert loaded.config.api.port == 8081
    assert loaded.config.scheduler.agent_timeout == timedelta(seconds=30)
    assert {e.source for e in loaded.entries()} == {ConfigSource.DEFAULT}


def test_environment_overrides_file_overrides_default(manager_toml: Path) -> None:
    env_url = "postgresql+asyncpg://postgres@127.0.0.1:5432/other"
    loaded = load_config(
        ManagerConfig,
        service="manager",
        config_path=manager_toml,
        environ={"BACKEND_DB__URL": env_url, "BACKEND_API__PORT": "9001", "HOME": "/x"},
    )
    assert loaded.config.db.url == env_url
    assert loaded.config.db.pool_size == 3
    assert loaded.config.db.max_overflow == 8
    assert loaded.config.api.port == 9001
    assert loaded.config.scheduler.agent_timeout == timedelta(seconds=45)
    entries = entry_map(loaded)
    assert entries["db.url"] == (env_url, ConfigSource.ENV, "BACKEND_DB__URL")
    assert entries["db.pool_size"] == (3, ConfigSource.FILE, str(manager_toml))
    assert entries["db.max_overflow"] == (8, ConfigSource.DEFAULT, "")
    assert entries["api.port"] == (9001, ConfigSource.ENV, "BACKEND_API__PORT")
    assert entries["scheduler.agent_timeout"][1] is ConfigSource.FILE


def test_file_is_found_in_the_working_directory(
    manager_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(manager_toml.parent)
    loaded = load_config(ManagerConfig, service="manager", environ={})
    assert loaded.file == manager_toml
    assert loaded.config.db.pool_size == 3


def test_secrets_are_masked_in_entries() -> None:
    loaded = load_config(
        GatewayConfig,
        service=NO_FILE_SERVICE,
        environ={
            "BACKEND_MANAGER__SECRET_KEY": "s3cret-token",
            "BACKEND_REDIS__URL": "redis://:hunter2@10.0.0.5:6379/1",
        },
    )
    assert loaded.config.manager.secret_key == "s3cret-token"
    assert loaded.config.redis.url == "redis://:hunter2@10.0.0.5:6379/1"
    entries = {e.key: e for e in loaded.entries()}
    assert entries["manager.secret_key"].value == "********"
    assert entries["manager.secret_key"].secret is SecretKind.FULL
    assert entries["redis.url"].value == "redis://:***@10.0.0.5:6379/1"
    assert entries["redis.url"].secret is SecretKind.URL_PASSWORD
    assert entries["db.url"].value == "postgresql+asyncpg://postgres@127.0.0.1:5432/backend"
    assert all("hunter2" not in str(e.value) for e in loaded.entries())


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://user:pa:ss@db/x", "postgresql://user:***@db/x"),
        ("postgresql://user@db/x", "postgresql://user@db/x"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url_password(url: str, masked: str) -> None:
    assert mask_url_password(url) == masked


def test_invalid_values_name_the_key_and_where_it_came_from() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(
            ManagerConfig,
            service=NO_FILE_SERVICE,
            environ={"BACKEND_DB__POOL_SIZE": "0", "BACKEND_SCHEDULER__INTERVAL": "soon"},
        )
    assert info.value.message == (
        f"invalid {NO_FILE_SERVICE} configuration: "
        "db.pool_size (from BACKEND_DB__POOL_SIZE): Input should be greater than or equal to 1; "
        "scheduler.interval (from BACKEND_SCHEDULER__INTERVAL): invalid duration 'soon': "
        "expected e.g. 500ms, 30s, 5m, 1h30m or seconds"
    )


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "manager.toml"
    path.write_text("[db]\nurl_typo = 'x'\n")
    with pytest.raises(ConfigurationError, match=r"db\.url_typo .*: unknown key"):
        load_config(ManagerConfig, service="manager", config_path=path, environ={})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(ManagerConfig, service="manager", config_path=tmp_path / "nope.toml")


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "manager.toml"
    path.write_text("[db\nurl = ")
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        load_config(ManagerConfig, service="manager", config_path=path, environ={})


def test_unknown_environment_keys_are_reported_and_other_sections_ignored() -> None:
    loaded = load_config(
        ManagerConfig,
        service=NO_FILE_SERVICE,
        environ={
            "BACKEND_DB__NOPE": "1",
            "BACKEND_DB__URL__DEEPER": "1",
            "BACKEND_SIDECAR__CONCURRENCY": "4",  # a section of another service
            "BACKEND_MODE": "x",  # no section part
        },
    )
    assert loaded.unknown_env == ("BACKEND_DB__NOPE", "BACKEND_DB__URL__DEEPER")
    assert {e.source for e in loaded.entries()} == {ConfigSource.DEFAULT}


def test_environment_values_of_lists_and_tables_are_json() -> None:
    loaded = load_config(
        TaggedConfig,
        service=NO_FILE_SERVICE,
        environ={"BACKEND_TAGS__NAMES": '["a", "b"]', "BACKEND_TAGS__LIMITS": '{"x": 2}'},
    )
    assert loaded.config.tags.names == ["a", "b"]
    assert loaded.config.tags.limits == {"x": 2}
    with pytest.raises(ConfigurationError) as info:
        load_config(TaggedConfig, service=NO_FILE_SERVICE, environ={"BACKEND_TAGS__NAMES": "a,b"})
    assert info.value.message == "BACKEND_TAGS__NAMES: expected a JSON value for tags.names"


def test_loaded_config_is_the_model_type() -> None:
    loaded = load_config(TaggedConfig, service=NO_FILE_SERVICE, environ={})
    assert isinstance(loaded.config, BaseModel)
    assert loaded.config == TaggedConfig()

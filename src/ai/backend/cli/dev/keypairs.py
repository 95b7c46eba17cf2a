"""The dev keypairs, made with ``mgr keypair create … --json`` as an operator would: ``admin``
(the client's, written to ``client.toml``), ``agent`` (the agents' heartbeats) and ``gateway``
(the gateway's model-registry reads). A keypair recorded by an earlier ``dev up`` is reused while
it still exists and is active: the manager binds an agent id to the first agent keypair that
heartbeats with it, so the agents must keep theirs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .processes import run_cli
from .record import KeypairRecord

ROLES: Final = ("admin", "agent", "gateway")


async def active_access_keys(manager_config: Path, *, drop_env: list[str]) -> set[str]:
    listed = json.loads(
        await run_cli(
            ["mgr", "keypair", "list", "--json", "--config", str(manager_config)],
            drop_env=drop_env,
        )
    )
    return {item["access_key"] for item in listed if item.get("is_active")}


async def create_keypair(role: str, manager_config: Path, *, drop_env: list[str]) -> KeypairRecord:
    created = json.loads(
        await run_cli(
            ["mgr", "keypair", "create", "--role", role, "--user", f"dev-{role}", "--json"]
            + ["--config", str(manager_config)],
            drop_env=drop_env,
        )
    )
    return KeypairRecord(access_key=created["access_key"], secret_key=created["secret_key"])


async def ensure_keypairs(
    recorded: Mapping[str, KeypairRecord], manager_config: Path, *, drop_env: list[str]
) -> tuple[dict[str, KeypairRecord], list[str]]:
    """The keypair of every role (reused when it still exists) and the roles created now."""
    usable: dict[str, KeypairRecord] = {}
    if recorded:
        active = await active_access_keys(manager_config, drop_env=drop_env)
        usable = {role: keys for role, keys in recorded.items() if keys.access_key in active}
    missing = [role for role in ROLES if role not in usable]
    created = await asyncio.gather(
        *(create_keypair(role, manager_config, drop_env=drop_env) for role in missing)
    )
    usable.update(zip(missing, created, strict=True))
    return {role: usable[role] for role in ROLES}, missing

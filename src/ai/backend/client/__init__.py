"""Client SDK of Backend.AI Actors: :class:`AsyncSession` and :class:`Session` (the same API,
synchronous) over the manager's and the gateway's REST APIs, configured by
:class:`ClientConfig` (environment > ``client.toml`` > defaults). See README.md."""

from .config import ClientConfig
from .session import AsyncSession
from .sync_session import Session

__all__ = ["AsyncSession", "ClientConfig", "Session"]

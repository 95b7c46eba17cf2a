"""The asynchronous session: one HTTP connection pool, the manager and the gateway endpoints
signed with the configured keypair, and the resources on top of them.

    async with AsyncSession() as session:          # ClientConfig.load()
        for actor in await session.actors.list():
            print(actor.name, actor.running_replicas)

    async with AsyncSession.start(agents=1) as session:   # `dev up` first if nothing answers
        job = await session.tools.call("double", {"value": 2}, wait=10)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Final

import aiohttp

from .config import ClientConfig
from .dev_stack import DEV_UP_TIMEOUT, ensure_dev_stack
from .exceptions import BackendClientError
from .func.actors import Actors
from .func.admin import Admin
from .func.agents import Agents
from .func.jobs import Jobs
from .func.models import Models
from .func.tools import Tools
from .transport import ServiceEndpoint

DEFAULT_TIMEOUT: Final = 60.0  # seconds for one request (streams have no total limit)
SESSION_CLOSED: Final = "session closed"  # the error of every call after close()


class AsyncSession:
    """``config`` defaults to :meth:`ClientConfig.load`; ``timeout`` bounds each request.
    Use it as an async context manager, or call :meth:`close` when done; a closed session
    refuses every request (:class:`BackendClientError` "session closed")."""

    def __init__(
        self, config: ClientConfig | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.config: Final = config if config is not None else ClientConfig.load()
        self._http: aiohttp.ClientSession | None = None
        self._closed = False
        self.manager: Final = ServiceEndpoint(
            service="manager",
            url=self.config.endpoint,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            http=self._http_session,
            timeout=timeout,
        )
        self.gateway: Final = ServiceEndpoint(
            service="gateway",
            url=self.config.gateway_endpoint,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            http=self._http_session,
            timeout=timeout,
        )
        self.actors: Final = Actors(self.manager)
        self.agents: Final = Agents(self.manager)
        self.models: Final = Models(self.manager, self.gateway)
        self.admin: Final = Admin(self.manager)
        self.jobs: Final = Jobs(self.gateway)
        self.tools: Final = Tools(self.gateway)

    def _http_session(self) -> aiohttp.ClientSession:
        """Created on first use, in the event loop that uses it; never again once the session
        is closed (a stream that reconnects after :meth:`close` ends with "session closed")."""
        if self._closed:
            raise BackendClientError(SESSION_CLOSED)
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        """Close the connections; calling it again does nothing."""
        self._closed = True
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        agents: int | None = None,
        mock_gpus: int | None = None,
        config: ClientConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        dev_up_command: Sequence[str] | None = None,
        dev_up_timeout: float = DEV_UP_TIMEOUT,
        echo: bool = True,
    ) -> AsyncIterator[AsyncSession]:
        """A session on the configured platform, after bringing the local dev stack up if
        nothing answers at the manager's endpoint: runs ``python -m ai.backend.cli dev up
        [--agents N] [--mock-gpus M]`` (or ``dev_up_command`` with those options appended),
        showing its output on stderr when ``echo``, then reloads the client configuration
        that ``dev up`` wrote. A stack that is already up is used as it is (``agents`` and
        ``mock_gpus`` then change nothing). Raises
        :class:`~ai.backend.client.exceptions.DevStackError` with the tail of ``dev up``'s
        output when it fails."""
        ready = await ensure_dev_stack(
            config if config is not None else ClientConfig.load(),
            agents=agents,
            mock_gpus=mock_gpus,
            command=dev_up_command,
            timeout=dev_up_timeout,
            echo=echo,
        )
        async with cls(ready, timeout=timeout) as session:
            yield session

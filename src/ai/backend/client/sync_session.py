"""The synchronous session: the same API as :class:`AsyncSession`, for scripts and notebooks
that do not run an event loop. One event loop runs in a background thread for the session's
lifetime; every call is handed to it and waited for. ``jobs.events`` and ``actors.logs`` are
plain iterators.

    with Session() as session:
        job = session.tools.call("double", {"value": 2}, wait=10)
        for event in session.jobs.events(job.id):
            print(event.seq, event.kind)
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.gateway_api import (
    ApiTokenCreated,
    ApiTokenInfo,
    JobHandle,
    JobInfo,
    StoredJobEvent,
    ToolInfo,
)
from ai.backend.common.dto.manager_api import (
    ActorInfo,
    ActorSummary,
    AgentInfo,
    ApplyResult,
    KeypairCreated,
    KeypairInfo,
    KeypairRoleName,
    ModelInfo,
)

from .config import ClientConfig
from .dev_stack import DEV_UP_TIMEOUT, ensure_dev_stack
from .dto import JobPage, LogLine
from .exceptions import BackendClientError
from .func.admin import Keypairs, Tokens
from .func.jobs import Jobs
from .session import DEFAULT_TIMEOUT, SESSION_CLOSED, AsyncSession

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread of its own until :meth:`stop`; after that,
    :meth:`run` refuses with :class:`BackendClientError` "session closed"."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="backend.ai-client", daemon=True
        )
        # held while handing a coroutine to the loop and while deciding to stop, so that
        # every coroutine handed over is either run or cancelled by stop()
        self._handover = threading.Lock()
        self._stopped = False
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (an interrupt of the waiting
        thread cancels it). :class:`BackendClientError` "session closed" once :meth:`stop`
        was called, also for a coroutine still running then (it is cancelled)."""
        with self._handover:
            if self._stopped:
                coroutine.close()
                raise BackendClientError(SESSION_CLOSED)
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._stopped:
                raise BackendClientError(SESSION_CLOSED) from None
            raise
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Generator[T, None, None]:
        """``iterator``'s items, one ``run`` each; closing the returned iterator (or leaving
        a ``for`` loop early) closes ``iterator`` on the loop."""
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and not self._stopped:
                if threading.current_thread() is self._thread:
                    # dropped inside the loop's own thread (garbage collection): cannot wait
                    self._loop.create_task(close())
                else:
                    # RuntimeError: still running (interrupted); BackendClientError: stopped
                    # meanwhile (stop() finalizes the iterator)
                    with contextlib.suppress(RuntimeError, BackendClientError):
                        self.run(close())

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Stop the loop: every coroutine still running is cancelled (a thread waiting for one
        gets "session closed"), every async generator closed. Calling it again does
        nothing."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a session cannot be closed from inside its own event loop")
        with self._handover:
            if self._stopped:
                return
            self._stopped = True
        # handed over after every coroutine handed over before the flag was set: it sees them
        asyncio.run_coroutine_threadsafe(self._finish(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _finish(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._loop.shutdown_asyncgens()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class SyncActors:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self._run = runner.run
        self._iterate = runner.iterate
        self._actors = session.actors

    def apply(self, spec: dict[str, Any] | ActorSpec | str | os.PathLike[str]) -> ApplyResult:
        return self._run(self._actors.apply(spec))

    def list(self) -> builtins.list[ActorSummary]:
        return self._run(self._actors.list())

    def get(self, name: str) -> ActorInfo:
        return self._run(self._actors.get(name))

    def scale(self, name: str, replicas: int | Literal["auto"]) -> ActorSummary:
        return self._run(self._actors.scale(name, replicas))

    def delete(self, name: str) -> ActorSummary:
        return self._run(self._actors.delete(name))

    def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        process: str | None = None,
        tail: int = 100,
        follow: bool = False,
    ) -> Generator[LogLine, None, None]:
        return self._iterate(
            self._actors.logs(name, replica=replica, process=process, tail=tail, follow=follow)
        )


class SyncAgents:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self._run = runner.run
        self._agents = session.agents

    def list(self) -> builtins.list[AgentInfo]:
        return self._run(self._agents.list())

    def get(self, agent_id: str) -> AgentInfo:
        return self._run(self._agents.get(agent_id))


class SyncJobs:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self._run = runner.run
        self._iterate = runner.iterate
        self._jobs: Jobs = session.jobs

    def submit(
        self,
        tool: str | None = None,
        *,
        route: builtins.list[str] | None = None,
        arguments: dict[str, Any] | None = None,
        timeout: str | timedelta | None = None,
    ) -> JobInfo:
        return self._run(self._jobs.submit(tool, route=route, arguments=arguments, timeout=timeout))

    def get(self, job_id: str) -> JobInfo:
        return self._run(self._jobs.get(job_id))

    def list(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JobPage:
        return self._run(self._jobs.list(status=status, limit=limit, cursor=cursor))

    def cancel(self, job_id: str) -> JobInfo:
        return self._run(self._jobs.cancel(job_id))

    def wait(self, job_id: str, *, timeout: float | None = None) -> JobInfo:
        return self._run(self._jobs.wait(job_id, timeout=timeout))

    def events(
        self, job_id: str, *, after: int | None = None
    ) -> Generator[StoredJobEvent, None, None]:
        return self._iterate(self._jobs.events(job_id, after=after))


class SyncTools:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self._run = runner.run
        self._tools = session.tools

    def list(self) -> builtins.list[ToolInfo]:
        return self._run(self._tools.list())

    def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        timeout: str | timedelta | None = None,
    ) -> JobInfo | JobHandle:
        return self._run(self._tools.call(name, arguments, wait=wait, timeout=timeout))


class SyncModels:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self._run = runner.run
        self._models = session.models

    def list(self) -> builtins.list[ModelInfo]:
        return self._run(self._models.list())

    def infer(
        self,
        name: str,
        inputs: builtins.list[dict[str, Any]],
        *,
        version: str | None = None,
        parameters: dict[str, Any] | None = None,
        outputs: builtins.list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._models.infer(
                name,
                inputs,
                version=version,
                parameters=parameters,
                outputs=outputs,
                request_id=request_id,
            )
        )


class SyncKeypairs:
    def __init__(self, runner: LoopThread, keypairs: Keypairs) -> None:
        self._run = runner.run
        self._keypairs = keypairs

    def create(
        self,
        role: KeypairRoleName = "user",
        user_name: str | None = None,
        *,
        rate_limit: int | None = None,
    ) -> KeypairCreated:
        return self._run(self._keypairs.create(role, user_name, rate_limit=rate_limit))

    def list(self) -> builtins.list[KeypairInfo]:
        return self._run(self._keypairs.list())

    def delete(self, access_key: str) -> None:
        self._run(self._keypairs.delete(access_key))


class SyncTokens:
    def __init__(self, runner: LoopThread, tokens: Tokens) -> None:
        self._run = runner.run
        self._tokens = tokens

    def create(
        self,
        access_key: str,
        *,
        name: str | None = None,
        expires_in: str | timedelta | None = None,
    ) -> ApiTokenCreated:
        return self._run(self._tokens.create(access_key, name=name, expires_in=expires_in))

    def list(self) -> builtins.list[ApiTokenInfo]:
        return self._run(self._tokens.list())

    def delete(self, token_id: str) -> None:
        self._run(self._tokens.delete(token_id))


class SyncAdmin:
    def __init__(self, runner: LoopThread, session: AsyncSession) -> None:
        self.keypairs: Final = SyncKeypairs(runner, session.admin.keypairs)
        self.tokens: Final = SyncTokens(runner, session.admin.tokens)


class Session:
    """``config`` defaults to :meth:`ClientConfig.load`; ``timeout`` bounds each request.
    Use it as a context manager, or call :meth:`close` when done (it stops the thread;
    closing twice is harmless)."""

    def __init__(
        self, config: ClientConfig | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._async = AsyncSession(config, timeout=timeout)
        self._runner = LoopThread()
        self.config: Final = self._async.config
        self.actors: Final = SyncActors(self._runner, self._async)
        self.agents: Final = SyncAgents(self._runner, self._async)
        self.jobs: Final = SyncJobs(self._runner, self._async)
        self.tools: Final = SyncTools(self._runner, self._async)
        self.models: Final = SyncModels(self._runner, self._async)
        self.admin: Final = SyncAdmin(self._runner, self._async)

    def close(self) -> None:
        """Close the connections and stop the thread; calling it again does nothing. A
        stream another thread is iterating ends with :class:`BackendClientError` "session
        closed", and so does every later call."""
        if self._runner.stopped:
            return
        try:
            self._runner.run(self._async.close())
        except BackendClientError:
            pass  # another thread closed it just now
        finally:
            self._runner.stop()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @classmethod
    @contextmanager
    def start(
        cls,
        *,
        agents: int | None = None,
        mock_gpus: int | None = None,
        config: ClientConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        dev_up_command: Sequence[str] | None = None,
        dev_up_timeout: float = DEV_UP_TIMEOUT,
        echo: bool = True,
    ) -> Iterator[Session]:
        """:meth:`AsyncSession.start`, synchronously."""
        runner = LoopThread()
        try:
            ready = runner.run(
                ensure_dev_stack(
                    config if config is not None else ClientConfig.load(),
                    agents=agents,
                    mock_gpus=mock_gpus,
                    command=dev_up_command,
                    timeout=dev_up_timeout,
                    echo=echo,
                )
            )
        finally:
            runner.stop()
        with cls(ready, timeout=timeout) as session:
            yield session

"""An agent's replica logs API, ``GET {agent}/v1/replicas/{id}/logs`` (NDJSON), as the manager
asks it: signed with the keypair the agent heartbeats with (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
from yarl import URL

from ai.backend.common.auth.hmac_signing import EndpointSigner
from ai.backend.common.dto.manager_api import LogLine
from ai.backend.common.json import JSONDecodeError, loads

CONNECT_TIMEOUT = 5.0
# an agent reads at most 4 MiB of each log for a tail: a minute without a byte and it is taken
# for gone (the time a tail takes as a whole is not limited, since the caller may read slowly)
TAIL_READ_TIMEOUT = 60.0
# a followed agent writes an empty line after 15 s of silence; thrice that without a byte and
# it is taken for gone
FOLLOW_READ_TIMEOUT = 45.0
ERROR_BODY_LIMIT = 300
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class AgentEndpoint:
    agent_id: str
    addr: str
    access_key: str
    secret_key: str = field(repr=False)


class AgentUnreachable(Exception):
    """The agent did not answer, or not as an agent should (the message says how)."""


class ReplicaLogsMissing(Exception):
    """The agent has no logs of the replica (404): it never started it there."""


def _parse_line(raw: bytes) -> LogLine | None:
    """A line of the agent's answer; ``None`` for a heartbeat (an empty line)."""
    if not raw.strip():
        return None
    try:
        data = loads(raw)
    except JSONDecodeError as e:
        raise AgentUnreachable(f"the agent's answer is not NDJSON: {e}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) for key in ("replica_id", "process", "line")
    ):
        raise AgentUnreachable("the agent's answer holds a line without replica_id/process/line")
    return LogLine(replica_id=data["replica_id"], process=data["process"], line=data["line"])


async def _read_line(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.content.readline()
    except ValueError:  # longer than the reader's limit; an agent's lines are far shorter
        raise AgentUnreachable("the agent's answer holds an overlong line") from None


class AgentLogClient:
    """One HTTP session for every agent; its connections are not limited in number, since each
    followed replica holds one for as long as it is followed (the manager's API limits how many
    streams a caller follows at once)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def lines(
        self, agent: AgentEndpoint, replica_id: str, *, process: str, tail: int, follow: bool
    ) -> AsyncGenerator[LogLine, None]:
        """The replica's lines as the agent streams them, until it ends the answer.
        Raises :class:`ReplicaLogsMissing` (404) or :class:`AgentUnreachable`."""
        path = (
            f"/v1/replicas/{quote(replica_id, safe='')}/logs"
            f"?process={quote(process, safe='')}&tail={tail}&follow={int(follow)}"
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=CONNECT_TIMEOUT,
            sock_read=FOLLOW_READ_TIMEOUT if follow else TAIL_READ_TIMEOUT,
        )
        try:
            signer = EndpointSigner(agent.addr, agent.access_key, agent.secret_key)
            url = URL(signer.url(path), encoded=True)
        except ValueError as e:
            raise AgentUnreachable(f"its address {agent.addr!r} is not a URL: {e}") from None
        headers = signer.headers("GET", path, b"", CONTENT_TYPE)
        try:
            async with self._client().get(url, headers=headers, timeout=timeout) as response:
                if response.status == 404:
                    raise ReplicaLogsMissing(replica_id)
                if response.status != 200:
                    text = (await response.text(errors="replace"))[:ERROR_BODY_LIMIT]
                    raise AgentUnreachable(f"it answered {response.status}: {text}")
                while raw := await _read_line(response):
                    line = _parse_line(raw)
                    if line is not None:
                        yield line
        except (aiohttp.ClientError, TimeoutError) as e:
            reason = str(e) or type(e).__name__
            raise AgentUnreachable(reason) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

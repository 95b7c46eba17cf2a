"""What ``./backend.ai demo`` runs through the real services, one scenario per capability: each
calls the platform as a user would (the SDK, KServe, MCP) and returns what happened."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from rich.console import Console

from ai.backend.client import AsyncSession
from ai.backend.common.dto.gateway_api import JobHandle, JobInfo
from ai.backend.common.dto.job_event import JobEventKind, JobStatus

from .mcp_call import call_tool

# the examples the demo calls (examples/dev-stack.yaml deploys them with `dev up`)
PIPELINE_TOOL: Final = "double_then_increment"
FAN_OUT_TOOL: Final = "square_all"
STREAM_TOOL: Final = "stream_tokens"
GPU_TOOL: Final = "gpu_info"
GPU_ACTOR: Final = "gpu-probe"
ECHO_MODEL: Final = "echo"
DEMO_ACTORS: Final = (
    "doubler",
    "incrementer",
    "splitter",
    "squarer",
    "token-streamer",
    "kserve-echo",
)


@dataclass(frozen=True)
class ScenarioOutcome:
    title: str
    ok: bool
    seconds: float
    detail: str


Scenario = Callable[[AsyncSession, Console], Awaitable[str]]


class ScenarioFailed(Exception):
    """A scenario's call came back, but not as the demo expects."""


def _short(value: Any, limit: int = 90) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finished(job: JobInfo | JobHandle) -> JobInfo:
    if not isinstance(job, JobInfo):
        raise ScenarioFailed(f"job {job.job_id} still {job.status} after the wait")
    if job.status is not JobStatus.SUCCEEDED:
        raise ScenarioFailed(f"job {job.id} {job.status}: {_short(job.error)}")
    return job


async def pipeline(session: AsyncSession, console: Console) -> str:
    job = _finished(await session.tools.call(PIPELINE_TOOL, {"value": 10}, wait=30))
    console.print(f"  {PIPELINE_TOOL}(value=10) → {_short(job.result)}  [dim]job {job.id}[/]")
    return f"doubler → incrementer: 10 → {job.result.get('value')}"


async def fan_out_fan_in(session: AsyncSession, console: Console) -> str:
    values = [1, 2, 3, 4, 5]
    job = _finished(await session.tools.call(FAN_OUT_TOOL, {"values": values}, wait=30))
    squares = [branch.get("value") for branch in job.result.get("results", [])]
    console.print(f"  {FAN_OUT_TOOL}(values={values}) → {_short(job.result)}")
    if squares != [v * v for v in values]:
        raise ScenarioFailed(f"fan-in gave {squares}, not the squares in order")
    return f"{len(values)} branches in parallel, joined in order: {squares}"


async def streamed_tokens(session: AsyncSession, console: Console) -> str:
    text = "actors stream partial results while they work"
    job = await session.jobs.submit(STREAM_TOOL, arguments={"text": text})
    tokens: list[str] = []
    started = time.perf_counter()
    first_partial: float | None = None
    console.print("  ", end="")
    async for event in session.jobs.events(job.id):
        if event.kind is JobEventKind.PARTIAL:
            first_partial = first_partial or time.perf_counter() - started
            token = str((event.data.get("data") or {}).get("token", ""))
            tokens.append(token)
            console.print(token, end=" ", highlight=False)
    console.print()
    done = await session.jobs.get(job.id)
    if done.status is not JobStatus.SUCCEEDED:
        raise ScenarioFailed(f"job {done.id} {done.status}: {_short(done.error)}")
    if " ".join(tokens) != text:
        raise ScenarioFailed(f"partials {tokens!r} do not spell the input")
    return f"{len(tokens)} partials live over SSE, the first after {(first_partial or 0):.2f} s"


async def gpu_actor(session: AsyncSession, console: Console) -> str:
    actor = await session.actors.get(GPU_ACTOR)
    running = [r for r in actor.replicas if r.status == "running"]
    if not running:
        raise ScenarioFailed(f"{GPU_ACTOR} has no running replica")
    replica = running[0]
    job = _finished(await session.tools.call(GPU_TOOL, {}, wait=30))
    console.print(
        f"  replica {replica.id} on {replica.agent_id}, devices {replica.device_ids}"
        f" → handler saw {_short(job.result)}"
    )
    return f"placed on {replica.agent_id} GPU {','.join(replica.device_ids)}: {_short(job.result)}"


async def kserve_infer(session: AsyncSession, console: Console) -> str:
    models = [m.name for m in await session.models.list()]
    if ECHO_MODEL not in models:
        raise ScenarioFailed(f"model {ECHO_MODEL!r} not registered (models: {models})")
    answer = await session.models.infer(
        ECHO_MODEL,
        [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}],
    )
    outputs = {o["name"]: o.get("data") for o in answer.get("outputs", [])}
    console.print(f"  POST /v2/models/{ECHO_MODEL}/infer → {_short(outputs)}")
    return f"KServe v2 {ECHO_MODEL}: {_short(outputs)}"


async def mcp_tool_call(session: AsyncSession, console: Console) -> str:
    config = session.config
    if config.access_key is None:
        raise ScenarioFailed("the client config has no keypair (see `./backend.ai dev up`)")
    token = await session.admin.tokens.create(config.access_key, name="demo", expires_in="1h")
    progress: list[float] = []

    def shown(params: dict[str, Any]) -> None:
        progress.append(float(params.get("progress", 0)))
        total = params.get("total")
        console.print(
            f"  progress {params.get('progress')}/{total} {params.get('message') or ''}",
            highlight=False,
        )

    async with aiohttp.ClientSession() as http:
        outcome = await call_tool(
            http,
            f"{config.gateway_endpoint.rstrip('/')}/mcp",
            token.token,
            PIPELINE_TOOL,
            {"value": 1},
            on_progress=shown,
        )
    if outcome.error is not None or outcome.result is None:
        raise ScenarioFailed(f"MCP error: {_short(outcome.error)}")
    if outcome.result.get("isError"):
        raise ScenarioFailed(f"tool error: {_short(outcome.result.get('content'))}")
    structured = outcome.result.get("structuredContent")
    return f"tools/call with {len(progress)} progress notifications → {_short(structured)}"


SCENARIOS: Final[list[tuple[str, Scenario]]] = [
    ("pipeline (2 actors)", pipeline),
    ("fan-out + fan-in", fan_out_fan_in),
    ("streamed partials", streamed_tokens),
    ("GPU actor on mock GPUs", gpu_actor),
    ("KServe v2 inference", kserve_infer),
    ("MCP tool call + progress", mcp_tool_call),
]

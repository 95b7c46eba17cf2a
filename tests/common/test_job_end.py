"""Ending jobs through the transport: every terminal write goes through the job's end guard, so
duplicates, late branches and cancels never give a job a second terminal event."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from ai.backend.common.transport.base import (
    BranchEnd,
    BranchEnded,
    Delivery,
    FanOut,
    JobEndResult,
    Outcome,
    QueueDepth,
)
from ai.backend.common.transport.redis_streams import RedisStreamsTransport


async def terminal_events(redis: Redis, transport: RedisStreamsTransport) -> list[dict[str, Any]]:
    entries: Any = await redis.xrange(transport.keys.events)
    events = [orjson.loads(fields[b"ev"]) for _id, fields in entries]
    return [{k: v for k, v in e.items() if k != "at"} for e in events]


async def delivered(transport: RedisStreamsTransport, crew: str, count: int) -> list[Delivery]:
    await transport.publish_batch(crew, [b"{}"] * count)
    return await transport.consume(crew, "crew-1", count=count)


def branch_end(
    delivery: Delivery,
    job_id: str,
    envelope_id: str,
    branch: tuple[int, ...] = (),
    *,
    succeeded: bool = True,
    outcome: Any = None,
    parent: str = "p",
) -> BranchEnd:
    default = {"value": envelope_id} if succeeded else {"code": "processing_error"}
    return BranchEnd(
        delivery=delivery,
        job_id=job_id,
        envelope_id=envelope_id,
        branch=branch,
        succeeded=succeeded,
        outcome=orjson.dumps(default if outcome is None else outcome),
        event={"job_id": job_id, "envelope_id": envelope_id, "actor": "crew"},
        parent_id=parent if branch else None,
    )


async def test_a_single_branch_ends_its_job_and_is_acknowledged(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    [delivery] = await delivered(transport, "happy-end", 1)
    assert await transport.end_branches([branch_end(delivery, "j", "e1")]) == [
        BranchEnded.JOB_ENDED
    ]
    assert await terminal_events(redis_client, transport) == [
        {
            "job_id": "j",
            "envelope_id": "e1",
            "actor": "crew",
            "kind": "succeeded",
            "result": {"value": "e1"},
            "data": {"branches": 1},
        }
    ]
    assert await transport.depth("happy-end") == QueueDepth(lag=0, pending=0)
    assert await redis_client.get(transport.keys.job_end("j")) == b"succeeded"
    assert 3590 < await redis_client.ttl(transport.keys.job_end("j")) <= 3600
    assert await redis_client.exists(transport.keys.job_state("j")) == 0


async def test_the_same_envelope_at_both_crew_actors_ends_the_job_once(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    [happy] = await delivered(transport, "happy-end", 1)
    [error] = await delivered(transport, "error-end", 1)
    # one duplicate succeeded, the other failed, and both arrive in one batch
    results = await transport.end_branches(
        [branch_end(happy, "j", "e1"), branch_end(error, "j", "e1", succeeded=False)]
    )
    assert results == [BranchEnded.JOB_ENDED, BranchEnded.AFTER_JOB_END]
    assert [e["kind"] for e in await terminal_events(redis_client, transport)] == ["succeeded"]
    assert await transport.depth("error-end") == QueueDepth(lag=0, pending=0)


async def test_a_duplicate_branch_of_an_open_job_counts_once(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    [parent] = await delivered(transport, "splitter", 1)
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3)], acks=[parent]))
    first, again, second, third = await delivered(transport, "happy-end", 4)
    results = await transport.end_branches(
        [
            branch_end(first, "j", "c0", (0,)),
            branch_end(again, "j", "c0", (0,)),  # a duplicate: must not close branch 1
            branch_end(third, "j", "c2", (2,)),
        ]
    )
    assert results == [BranchEnded.OPEN, BranchEnded.DUPLICATE, BranchEnded.OPEN]
    assert await terminal_events(redis_client, transport) == []
    assert await transport.end_branches([branch_end(second, "j", "c1", (1,))]) == [
        BranchEnded.JOB_ENDED
    ]
    [event] = await terminal_events(redis_client, transport)
    assert (event["kind"], event["result"], event["data"]) == (
        "succeeded",
        {"results": [{"value": "c0"}, {"value": "c1"}, {"value": "c2"}]},
        {"branches": 3},
    )


async def test_a_fan_out_is_counted_once_per_parent(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    state = transport.keys.job_state("j")
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3), FanOut("j", "p", 3)]))
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3)]))  # processed again
    assert await redis_client.hget(state, "open") == b"2"
    await transport.commit(Outcome(fan_outs=[FanOut("j", "other-parent", 1)]))
    assert await redis_client.hget(state, "open") == b"2"  # one child: no branch added
    assert 86300 < await redis_client.ttl(state) <= 86400


async def test_a_fan_out_after_the_job_ended_is_not_counted(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    assert await transport.cancel_job("j", "stop") == JobEndResult(True, "cancelled")
    # a cancel is remembered as long as an open job's state: its envelopes go on arriving
    assert 86300 < await redis_client.ttl(transport.keys.job_end("j")) <= 86400
    await transport.commit(Outcome(fan_outs=[FanOut("j", "late-parent", 4)]))
    assert await redis_client.exists(transport.keys.job_state("j")) == 0


async def test_a_fan_out_child_whose_job_state_was_lost_fails_the_job_once(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 2)]))
    await redis_client.delete(transport.keys.job_state("j"))  # expired, or deleted by hand
    first, second = await delivered(transport, "happy-end", 2)
    results = await transport.end_branches(
        [branch_end(first, "j", "c0", (0,)), branch_end(second, "j", "c1", (1,))]
    )
    # an absent state must not read as "one open branch": that would succeed with one result
    assert results == [BranchEnded.JOB_STATE_LOST, BranchEnded.AFTER_JOB_END]
    # other branches may still be on their way: the end is kept for a day
    assert 86300 < await redis_client.ttl(transport.keys.job_end("j")) <= 86400
    [event] = await terminal_events(redis_client, transport)
    assert (event["kind"], event["error"], event["data"]) == (
        "failed",
        {
            "code": "processing_error",
            "message": "the job's branch state expired or was deleted before all its branches"
            " ended",
            "reason": "job_state_lost",
        },
        {"branches": 0},
    )


async def test_a_branch_ending_after_its_job_ended_writes_nothing(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    first, late = await delivered(transport, "happy-end", 2)
    await transport.end_branches([branch_end(first, "j", "e1")])
    # a different envelope of the same job, after the job's state was deleted at its end
    assert await transport.end_branches([branch_end(late, "j", "e2")]) == [
        BranchEnded.AFTER_JOB_END
    ]
    assert len(await terminal_events(redis_client, transport)) == 1
    assert await transport.depth("happy-end") == QueueDepth(lag=0, pending=0)


async def test_failed_branches_end_the_job_with_the_first_error_in_branch_order(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3)]))
    ok, late_error, early_error = await delivered(transport, "crew", 3)
    await transport.end_branches(
        [
            branch_end(ok, "j", "c0", (0,)),
            branch_end(late_error, "j", "c2", (2,), succeeded=False, outcome={"code": "two"}),
            branch_end(early_error, "j", "c1", (1,), succeeded=False, outcome={"code": "one"}),
        ]
    )
    [event] = await terminal_events(redis_client, transport)
    assert (event["kind"], event["error"], event["data"]) == (
        "failed",
        {"code": "one"},
        {"branches": 3},
    )


async def test_cancel_wins_once_and_later_branches_are_ignored(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 2)]))
    assert await transport.cancel_job("j", "user asked") == JobEndResult(True, "cancelled")
    assert await transport.cancel_job("j", "again") == JobEndResult(False, "cancelled")
    [branch] = await delivered(transport, "happy-end", 1)
    assert await transport.end_branches([branch_end(branch, "j", "c0", (0,))]) == [
        BranchEnded.AFTER_JOB_END
    ]
    assert await terminal_events(redis_client, transport) == [
        {"job_id": "j", "kind": "cancelled", "data": {"reason": "user asked"}}
    ]
    assert await redis_client.exists(transport.keys.job_state("j")) == 0
    [(job_id, _at)] = await transport.cancels_in_force(0)
    assert job_id == "j"


async def test_cancelling_a_finished_job_says_how_it_ended(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    [branch] = await delivered(transport, "error-end", 1)
    await transport.end_branches([branch_end(branch, "j", "e1", succeeded=False)])
    assert await transport.cancel_job("j", "too late") == JobEndResult(False, "failed")
    assert [e["kind"] for e in await terminal_events(redis_client, transport)] == ["failed"]
    assert await transport.cancels_in_force(0) == []


async def test_each_cancel_prunes_the_cancels_that_are_due(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    seconds, _micros = await redis_client.time()
    await redis_client.zadd(transport.keys.cancel, {"due": seconds - 1})
    await redis_client.zadd(transport.keys.cancel, {"later": seconds + 600})
    await transport.cancel_job("new", "stop", keep=30)
    await transport.cancel_job("default", "stop")
    kept = dict(await transport.cancels_in_force(0))
    assert sorted(kept) == ["default", "later", "new"]
    assert seconds + 29 <= kept["new"] <= seconds + 32
    assert seconds + 86399 <= kept["default"] <= seconds + 86402  # at most a day


async def test_a_parent_fanning_out_differently_the_second_time_counts_the_first_fan_out(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    # processed twice: three children the first time, five the second (a list that varies)
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3)]))
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 5)]))
    ends = await delivered(transport, "happy-end", 5)
    results = await transport.end_branches(
        [branch_end(d, "j", f"c{i}", (i,)) for i, d in zip((3, 4, 0, 1, 2), ends, strict=True)]
    )
    assert results == [
        BranchEnded.DUPLICATE,  # children 3 and 4 belong to the fan-out that was not counted
        BranchEnded.DUPLICATE,
        BranchEnded.OPEN,
        BranchEnded.OPEN,
        BranchEnded.JOB_ENDED,
    ]
    [event] = await terminal_events(redis_client, transport)
    assert event["result"] == {"results": [{"value": f"c{i}"} for i in range(3)]}


async def test_the_end_of_a_parent_whose_fan_out_counted_is_not_a_branch(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    # the duplicate of parent p failed (or returned one value) where its twin fanned out
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 2)]))
    own_end, first, second = await delivered(transport, "crew", 3)
    results = await transport.end_branches(
        [
            branch_end(own_end, "j", "p", succeeded=False),
            branch_end(first, "j", "c0", (0,)),
            branch_end(second, "j", "c1", (1,)),
        ]
    )
    assert results == [BranchEnded.DUPLICATE, BranchEnded.OPEN, BranchEnded.JOB_ENDED]
    [event] = await terminal_events(redis_client, transport)
    assert (event["kind"], event["data"]) == ("succeeded", {"branches": 2})


async def test_a_fan_out_after_the_parent_branch_ended_is_not_counted_nor_its_children(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    # in a fan-out of two, child c0 ended as a single value, then its twin fanned out
    await transport.commit(Outcome(fan_outs=[FanOut("j", "root", 2)]))
    c0_end, grandchild, c1_end = await delivered(transport, "crew", 3)
    assert await transport.end_branches([branch_end(c0_end, "j", "c0", (0,), parent="root")]) == [
        BranchEnded.OPEN
    ]
    await transport.commit(Outcome(fan_outs=[FanOut("j", "c0", 2)]))
    assert await redis_client.hget(transport.keys.job_state("j"), "open") == b"0"
    results = await transport.end_branches(
        [
            branch_end(grandchild, "j", "g0", (0, 0), parent="c0"),
            branch_end(c1_end, "j", "c1", (1,), parent="root"),
        ]
    )
    assert results == [BranchEnded.DUPLICATE, BranchEnded.JOB_ENDED]
    [event] = await terminal_events(redis_client, transport)
    assert event["result"] == {"results": [{"value": "c0"}, {"value": "c1"}]}


async def test_fail_job_ends_a_job_once_whatever_its_open_branches(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 3)]))
    error = {"code": "processing_error", "message": "poison", "reason": "delivery_limit"}
    event = {"envelope_id": "p", "actor": "splitter", "attempt": 1}
    assert await transport.fail_job("j", error, event) == JobEndResult(True, "failed")
    assert await transport.fail_job("j", error, event) == JobEndResult(False, "failed")
    assert await transport.cancel_job("j", "late") == JobEndResult(False, "failed")
    assert await terminal_events(redis_client, transport) == [
        {
            "job_id": "j",
            "envelope_id": "p",
            "actor": "splitter",
            "attempt": 1,
            "kind": "failed",
            "error": error,
        }
    ]
    assert await redis_client.exists(transport.keys.job_state("j")) == 0
    # its other branches may still come: they are skipped, and the end is kept for a day
    assert [job for job, _at in await transport.cancels_in_force(0)] == ["j"]
    assert 86300 < await redis_client.ttl(transport.keys.job_end("j")) <= 86400


async def test_an_extra_child_of_a_duplicate_fan_out_cannot_count_a_fan_out_of_its_own(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(Outcome(fan_outs=[FanOut("j", "p", 2)]))  # p: children c0, c1
    # a duplicate of p fanned out into three: its c2 is not a branch, and fans out in turn
    await transport.commit(Outcome(fan_outs=[FanOut("j", "c2", 2, branch_of="p", branch_index=2)]))
    # as does a child of a fan-out that was never counted
    await transport.commit(Outcome(fan_outs=[FanOut("j", "x0", 2, branch_of="x", branch_index=0)]))
    assert await redis_client.hget(transport.keys.job_state("j"), "open") == b"1"
    await transport.commit(Outcome(fan_outs=[FanOut("j", "c0", 2, branch_of="p", branch_index=0)]))
    assert await redis_client.hget(transport.keys.job_state("j"), "open") == b"2"
    ends = await delivered(transport, "crew", 5)
    results = await transport.end_branches(
        [
            branch_end(ends[0], "j", "g2.0", (2, 0), parent="c2"),
            branch_end(ends[1], "j", "g2.1", (2, 1), parent="c2"),
            branch_end(ends[2], "j", "g0.0", (0, 0), parent="c0"),
            branch_end(ends[3], "j", "g0.1", (0, 1), parent="c0"),
            branch_end(ends[4], "j", "c1", (1,), parent="p"),
        ]
    )
    assert results == [
        BranchEnded.DUPLICATE,
        BranchEnded.DUPLICATE,
        BranchEnded.OPEN,
        BranchEnded.OPEN,
        BranchEnded.JOB_ENDED,
    ]
    [event] = await terminal_events(redis_client, transport)
    assert event["result"] == {"results": [{"value": "g0.0"}, {"value": "g0.1"}, {"value": "c1"}]}

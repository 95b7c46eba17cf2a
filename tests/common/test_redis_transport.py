from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser
from redis.asyncio import Redis

from ai.backend.common.transport.base import DeadLetter, DelayedMessage, Outcome, QueueDepth
from ai.backend.common.transport.redis_streams import RedisStreamsTransport


async def test_publish_consume_ack(transport: RedisStreamsTransport, redis_client: Redis) -> None:
    await transport.ensure_queue("doubler")
    message_id = await transport.publish("doubler", b'{"value": 10}')
    deliveries = await transport.consume("doubler", "r-1", count=10)
    assert [(d.queue, d.message_id, d.body) for d in deliveries] == [
        ("doubler", message_id, b'{"value": 10}')
    ]
    assert await transport.depth("doubler") == QueueDepth(lag=0, pending=1)
    await transport.ack(deliveries)
    assert await transport.depth("doubler") == QueueDepth(lag=0, pending=0)
    assert await transport.consume("doubler", "r-1", count=10) == []
    stream = transport.keys.actor_stream("doubler")
    assert stream.endswith("actor:doubler")
    assert await redis_client.xlen(stream) == 1


async def test_registered_consumer_is_listed(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.register_consumer("replicas", "r-1")
    await transport.register_consumer("replicas", "r-1")  # idempotent
    consumers: Any = await redis_client.xinfo_consumers(
        transport.keys.actor_stream("replicas"), "replicas"
    )
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"r-1", 0)]


async def test_group_created_after_publishing_still_receives(
    transport: RedisStreamsTransport,
) -> None:
    await transport.publish("late", b"a")
    await transport.publish("late", b"b")
    assert await transport.depth("late") == QueueDepth(lag=2, pending=0)  # no group yet
    bodies = [d.body for d in await transport.consume("late", "r-1", count=10)]
    assert bodies == [b"a", b"b"]


async def test_publish_batch_keeps_order(transport: RedisStreamsTransport) -> None:
    bodies = [f"m{i}".encode() for i in range(50)]
    ids = await transport.publish_batch("batch", bodies)
    assert len(ids) == 50 and len(set(ids)) == 50
    deliveries = await transport.consume("batch", "r-1", count=100)
    assert [d.body for d in deliveries] == bodies
    assert [d.message_id for d in deliveries] == ids
    assert await transport.publish_batch("batch", []) == []


async def test_two_consumers_share_the_work(transport: RedisStreamsTransport) -> None:
    await transport.publish_batch("shared", [str(i).encode() for i in range(10)])
    first = await transport.consume("shared", "r-1", count=4)
    second = await transport.consume("shared", "r-2", count=100)
    assert [d.body for d in first] == [b"0", b"1", b"2", b"3"]
    assert [d.body for d in second] == [str(i).encode() for i in range(4, 10)]
    assert await transport.depth("shared") == QueueDepth(lag=0, pending=10)


async def test_consume_blocks_until_a_message_arrives(transport: RedisStreamsTransport) -> None:
    await transport.ensure_queue("blocking")
    assert await transport.consume("blocking", "r-1", count=1, block=0.05) == []
    await transport.publish("blocking", b"x")
    deliveries = await transport.consume("blocking", "r-1", count=1, block=5)
    assert [d.body for d in deliveries] == [b"x"]


async def test_idle_entry_of_a_dead_consumer_is_claimed(transport: RedisStreamsTransport) -> None:
    await transport.publish_batch("claim", [b"one", b"two"])
    taken = await transport.consume("claim", "dead-replica", count=10)
    assert len(taken) == 2
    # not idle long enough: nothing moves
    assert await transport.claim_idle("claim", "r-2", min_idle=60, count=10) == []
    claimed = await transport.claim_idle("claim", "r-2", min_idle=0, count=1)
    assert [(d.message_id, d.body) for d in claimed] == [(taken[0].message_id, b"one")]
    await transport.ack(claimed)
    rest = await transport.claim_idle("claim", "r-2", min_idle=0, count=10)
    assert [d.body for d in rest] == [b"two"]
    await transport.ack(rest)
    assert await transport.depth("claim") == QueueDepth(lag=0, pending=0)


async def test_claimed_entries_carry_their_delivery_count(
    transport: RedisStreamsTransport,
) -> None:
    await transport.publish("counted", b"poison")
    [first] = await transport.consume("counted", "dead-1", count=1)
    assert first.deliveries == 1
    [second] = await transport.claim_idle("counted", "dead-2", min_idle=0, count=1)
    [third] = await transport.claim_idle("counted", "r-3", min_idle=0, count=1)
    assert [(d.message_id, d.deliveries) for d in (second, third)] == [
        (first.message_id, 2),
        (first.message_id, 3),
    ]


async def test_reclaim_walks_a_long_pending_list_instead_of_restarting(
    transport: RedisStreamsTransport,
) -> None:
    bodies = [str(i).encode() for i in range(6)]
    await transport.publish_batch("deep", bodies)
    await transport.consume("deep", "dead-replica", count=10)
    seen = []
    for _ in range(3):
        claimed = await transport.claim_idle("deep", "r-2", min_idle=0, count=2)
        seen.append([d.body for d in claimed])
    # each call goes on where the last one stopped (it would re-take 0 and 1 from 0-0)
    assert seen == [[b"0", b"1"], [b"2", b"3"], [b"4", b"5"]]
    # the end was reached: the scan starts over
    again = await transport.claim_idle("deep", "r-2", min_idle=0, count=2)
    assert [d.body for d in again] == [b"0", b"1"]


async def test_touch_refreshes_only_entries_the_consumer_still_owns(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.publish_batch("owned", [b"mine", b"stolen"])
    mine, stolen = await transport.consume("owned", "r-1", count=2)
    # r-1 stalled; r-2 legitimately reclaimed one entry and is processing it
    [reclaimed] = await transport.claim_idle("owned", "r-2", min_idle=0, count=1)
    assert reclaimed.message_id == mine.message_id
    taken = await transport.touch("owned", "r-1", [mine.message_id, stolen.message_id])
    assert taken == [mine.message_id]
    stream = transport.keys.actor_stream("owned")
    pending: Any = await redis_client.xpending_range(stream, "owned", "-", "+", 10)
    owners = {
        p["message_id"].decode(): (p["consumer"].decode(), p["times_delivered"]) for p in pending
    }
    # the entry stays with r-2 and touching did not count a delivery
    assert owners == {mine.message_id: ("r-2", 2), stolen.message_id: ("r-1", 1)}
    assert await transport.touch("owned", "r-1", []) == []


class ReplyParser(BaseParser):
    """redis-py's own mapping of error replies to exceptions."""

    def on_connect(self, connection: Any) -> None: ...

    def on_disconnect(self) -> None: ...


async def test_transient_errors_are_told_from_rejected_calls(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await redis_client.set(transport.keys.actor_stream("wrongtype"), b"not a stream")
    with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE") as rejected:
        await transport.publish("wrongtype", b"x")
    assert not transport.is_transient(rejected.value)
    for reply in (
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
        "NOREPLICAS Not enough good replicas to write.",
        "BUSY Redis is busy running a script.",
    ):
        # as redis-py raises them: some get a class of their own, without the code
        assert transport.is_transient(ReplyParser().parse_error(reply)), reply
    assert not transport.is_transient(ReplyParser().parse_error("ERR unknown command 'NOPE'"))
    assert transport.is_transient(redis_errors.ConnectionError("Connection refused"))
    assert transport.is_transient(redis_errors.BusyLoadingError("LOADING Redis is loading"))
    assert transport.is_transient(redis_errors.ResponseError("BUSY Redis is busy running a script"))
    assert transport.is_transient(OSError("Network is unreachable"))
    assert not transport.is_transient(ValueError("a bug"))


async def test_depth_counts_lag_and_pending(transport: RedisStreamsTransport) -> None:
    assert await transport.depth("empty") == QueueDepth(lag=0, pending=0)
    await transport.ensure_queue("depth")
    await transport.publish_batch("depth", [b"x"] * 7)
    await transport.consume("depth", "r-1", count=3)
    depth = await transport.depth("depth")
    assert depth == QueueDepth(lag=4, pending=3)
    assert depth.total == 7


async def test_commit_writes_successors_and_acks_together(
    transport: RedisStreamsTransport,
) -> None:
    await transport.publish("hop1", b"in")
    [delivery] = await transport.consume("hop1", "r-1", count=1)
    await transport.commit(
        Outcome(publish=[("hop2", b"out-a"), ("hop2", b"out-b")], acks=[delivery])
    )
    assert await transport.depth("hop1") == QueueDepth(lag=0, pending=0)
    assert [d.body for d in await transport.consume("hop2", "r-1", count=10)] == [
        b"out-a",
        b"out-b",
    ]


async def test_dead_letter_keeps_original_and_error(transport: RedisStreamsTransport) -> None:
    await transport.publish("failing", b'{"value": 1}')
    [delivery] = await transport.consume("failing", "r-1", count=1)
    error = {"type": "ValueError", "message": "bad value", "attempt": 3}
    before = time.time()
    await transport.dead_letter(delivery, error)
    assert await transport.depth("failing") == QueueDepth(lag=0, pending=0)
    [entry] = await transport.read_dead_letters("failing")
    assert (entry.queue, entry.body, dict(entry.error)) == ("failing", b'{"value": 1}', error)
    assert before <= entry.at <= time.time()
    assert await transport.read_dead_letters("other") == []


async def test_delayed_retry_is_published_when_due(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.publish("flaky", b"attempt-1")
    [delivery] = await transport.consume("flaky", "r-1", count=1)
    await transport.retry_later(delivery, b"attempt-2", delay=30)
    assert await transport.depth("flaky") == QueueDepth(lag=0, pending=0)
    assert await redis_client.zcard(transport.keys.retry) == 1
    assert await transport.promote_due() == 0  # not due yet
    assert await transport.consume("flaky", "r-1", count=1) == []
    assert await transport.promote_due(now=time.time() + 31) == 1
    assert await transport.promote_due(now=time.time() + 31) == 0  # moved exactly once
    assert [d.body for d in await transport.consume("flaky", "r-1", count=1)] == [b"attempt-2"]
    assert await redis_client.zcard(transport.keys.retry) == 0


async def test_promote_due_respects_limit_and_order(transport: RedisStreamsTransport) -> None:
    now = time.time()
    await transport.commit(
        Outcome(
            delayed=[
                DelayedMessage("q-a", b"second", now - 1),
                DelayedMessage("q-a", b"first", now - 2),
                DelayedMessage("q-b", b"other\nwith newline", now - 0.5),
            ]
        )
    )
    assert await transport.promote_due(now=now, limit=2) == 2
    assert [d.body for d in await transport.consume("q-a", "r", count=10)] == [b"first", b"second"]
    assert await transport.promote_due(now=now) == 1
    assert [d.body for d in await transport.consume("q-b", "r", count=10)] == [
        b"other\nwith newline"
    ]


async def test_trim_drops_only_finished_messages(transport: RedisStreamsTransport) -> None:
    ids = await transport.publish_batch("trim", [b"1", b"2", b"3", b"4"])
    assert await transport.trim("trim") == 0  # no consumer yet
    first_two = await transport.consume("trim", "r-1", count=2)
    await transport.ack(first_two[1:])  # "1" still pending
    assert await transport.trim("trim") == 0
    await transport.ack(first_two[:1])
    assert await transport.trim("trim") == 2
    rest = await transport.consume("trim", "r-1", count=10)
    assert [d.message_id for d in rest] == ids[2:]


async def test_dead_letter_error_is_json(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.commit(
        Outcome(dead_letters=[DeadLetter("dl", b"body", {"type": "X", "at": 1})])
    )
    entries: Any = await redis_client.xrange(transport.keys.dead_letters("dl"))
    [(_, fields)] = entries
    assert fields[b"e"] == b"body"
    assert json.loads(fields[b"err"]) == {"type": "X", "at": 1}


async def test_a_due_retry_its_stream_refuses_is_dead_lettered_and_the_rest_move(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await redis_client.set(transport.keys.actor_stream("broken"), b"not a stream")
    now = time.time()
    await transport.commit(
        Outcome(
            delayed=[
                DelayedMessage("broken", b"refused", now - 2),
                DelayedMessage("fine", b"moved", now - 1),
            ]
        )
    )
    assert await transport.promote_due() == 2  # by the server's clock
    assert [d.body for d in await transport.consume("fine", "r", count=10)] == [b"moved"]
    [letter] = await transport.read_dead_letters("broken")
    assert (letter.body, dict(letter.error)) == (
        b"refused",
        {"code": "processing_error", "reason": "retry_refused"},
    )
    assert await redis_client.zcard(transport.keys.retry) == 0


async def test_claim_and_touch_recreate_a_group_that_was_lost(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.publish("lost", b"x")
    [delivery] = await transport.consume("lost", "r-1", count=1)
    await redis_client.delete(transport.keys.actor_stream("lost"))  # e.g. Redis lost its data
    assert await transport.touch("lost", "r-1", [delivery.message_id]) == [delivery.message_id]
    assert await transport.claim_idle("lost", "r-1", min_idle=0, count=5) == []
    await transport.publish("lost", b"y")
    assert [d.body for d in await transport.consume("lost", "r-1", count=5)] == [b"y"]


async def test_only_consumers_gone_and_owing_nothing_are_removed(
    transport: RedisStreamsTransport, redis_client: Redis
) -> None:
    await transport.publish_batch("tidy", [b"a", b"b"])
    await transport.register_consumer("tidy", "idle-empty")
    await transport.consume("tidy", "idle-owing", count=1)
    await transport.register_consumer("tidy", "busy")
    assert await transport.remove_idle_consumers("tidy", min_idle=3600) == []
    await transport.consume("tidy", "busy", count=1)  # it reads: not idle
    removed = await transport.remove_idle_consumers("tidy", min_idle=0.0)
    assert sorted(removed) == ["idle-empty"]  # the others hold pending entries
    consumers: Any = await redis_client.xinfo_consumers(transport.keys.actor_stream("tidy"), "tidy")
    assert sorted(c["name"] for c in consumers) == [b"busy", b"idle-owing"]

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.aio import MicroBatcher, cancel_and_wait


async def test_items_of_one_loop_turn_form_one_batch() -> None:
    batches: list[list[int]] = []

    async def double_all(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double_all)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert batches == [[0, 1, 2, 3]]
    assert [r if isinstance(r, int) else str(r) for r in results] == [0, "odd 1", 4, "odd 3"]
    assert await batcher.submit(4) == 8  # a later turn: a new batch
    assert batches == [[0, 1, 2, 3], [4]]


async def test_a_failing_batch_fails_each_item() -> None:
    async def broken(items: list[str]) -> list[str | Exception]:
        raise ConnectionError("redis is gone")

    batcher: MicroBatcher[str, str] = MicroBatcher(broken)
    results = await asyncio.gather(batcher.submit("a"), batcher.submit("b"), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ConnectionError", "ConnectionError"]
    with pytest.raises(ConnectionError, match="redis is gone"):
        await batcher.submit("c")


async def test_a_permanent_error_is_isolated_to_its_item() -> None:
    batches: list[list[str]] = []

    async def commit(items: list[str]) -> list[str | Exception]:
        batches.append(items)
        if "poison" in items:
            raise ValueError("WRONGTYPE in the batch")
        return [item.upper() for item in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(
        commit, isolate_when=lambda e: isinstance(e, ValueError)
    )
    results = await asyncio.gather(
        *(batcher.submit(item) for item in ("a", "poison", "b")), return_exceptions=True
    )
    assert [r if isinstance(r, str) else repr(r) for r in results] == [
        "A",
        "ValueError('WRONGTYPE in the batch')",
        "B",
    ]
    assert batches == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]


async def test_a_transient_error_is_not_isolated() -> None:
    calls: list[list[str]] = []

    async def commit(items: list[str]) -> list[str | Exception]:
        calls.append(items)
        raise ConnectionError("redis is gone")

    batcher: MicroBatcher[str, str] = MicroBatcher(
        commit, isolate_when=lambda e: isinstance(e, ValueError)
    )
    results = await asyncio.gather(batcher.submit("a"), batcher.submit("b"), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["ConnectionError", "ConnectionError"]
    assert calls == [["a", "b"]]


async def test_submitters_of_a_cancelled_batch_do_not_wait_forever() -> None:
    started = asyncio.Event()
    calls: list[list[str]] = []

    async def stuck_once(items: list[str]) -> list[str | Exception]:
        calls.append(items)
        if len(calls) == 1:
            started.set()
            await asyncio.Event().wait()  # the first batch never returns
        return [item.upper() for item in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(stuck_once)
    waiting = asyncio.gather(batcher.submit("a"), batcher.submit("b"), return_exceptions=True)
    await started.wait()
    assert batcher._flusher is not None
    batcher._flusher.cancel()
    results = await asyncio.wait_for(waiting, 5)
    assert [repr(r) for r in results] == ["RuntimeError('the batch was cancelled')"] * 2
    assert await asyncio.wait_for(batcher.submit("c"), 5) == "C"  # a new flush serves it


async def test_cancel_and_wait() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)

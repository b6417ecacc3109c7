"""The batcher behind group commit and batched outcomes: shared flushes, each caller its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ledger import batching


class Bad(Exception):
    pass


class Recorder:
    def __init__(self, bad: frozenset[int] = frozenset()) -> None:
        self.bad = bad
        self.flushes: list[list[int]] = []
        self.alone: list[int] = []

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.flushes.append(list(items))
        await asyncio.sleep(0.001)
        if self.bad & set(items):
            raise Bad("a bad item in the batch")
        return [i * 10 for i in items]

    async def one(self, item: int) -> int:
        self.alone.append(item)
        if item in self.bad:
            raise Bad(f"item {item} is bad")
        return item * 10


async def test_concurrent_callers_share_flushes_and_each_gets_its_own_result() -> None:
    rec = Recorder()
    batcher = batching.Batcher(rec.flush, rec.one, limit=1000, fallback_on=(Bad,))

    results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))

    assert results == [i * 10 for i in range(50)]
    assert len(rec.flushes) < 50
    assert sorted(i for f in rec.flushes for i in f) == list(range(50))


async def test_a_flush_never_exceeds_its_limit() -> None:
    rec = Recorder()
    batcher = batching.Batcher(rec.flush, rec.one, limit=7, size=lambda _i: 2)

    await asyncio.gather(*(batcher.submit(i) for i in range(40)))

    assert max(len(f) for f in rec.flushes) == 3  # 3 items of size 2 fit in 7


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    rec = Recorder(bad=frozenset({3}))
    batcher = batching.Batcher(rec.flush, rec.one, limit=1000, fallback_on=(Bad,))

    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)

    assert isinstance(results[3], Bad)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 10, 20, 40, 50]
    assert sorted(rec.alone) == list(range(6))  # the shared flush failed: each alone


async def test_an_error_outside_the_fallback_fails_the_batch_without_retrying_alone() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        raise RuntimeError("broken")

    async def one(item: int) -> int:
        raise AssertionError("not retried alone")

    batcher = batching.Batcher(flush, one, limit=10, fallback_on=(Bad,))

    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_cancelled_flush_answers_every_waiter_instead_of_leaving_them_hanging() -> None:
    started = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        started.set()
        await asyncio.sleep(3600)
        return list(items)

    batcher = batching.Batcher(flush, flush, limit=10, name="test-flusher")  # type: ignore[arg-type]
    waiters = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await started.wait()
    flusher = next(t for t in asyncio.all_tasks() if t.get_name() == "test-flusher")
    flusher.cancel()

    with pytest.raises(batching.Interrupted):
        await asyncio.wait_for(waiters[0], timeout=5)
    for w in waiters[1:]:
        with pytest.raises(batching.Interrupted):
            await asyncio.wait_for(w, timeout=5)

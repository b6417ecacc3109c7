"""Concurrent callers' work, done together: one flush at a time takes everything queued.

The shape behind group commit and the worker's batched outcomes. A caller hands
in an item and waits; one flusher task takes what is queued (up to a size limit)
and handles it in one go, then answers every caller with its own result. While a
flush is in flight, new items queue up and the next flush takes them all, so
batches grow with the load and nobody waits for a timer.

When the shared flush fails with one of the `fallback_on` errors, each item is
handled alone, so one bad item cannot fail the others: each caller gets its own
outcome or error. Nobody is answered before its flush has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final


class Interrupted(Exception):
    """The flush was interrupted (shutdown, cancellation) before this item was handled."""


class Batcher[T, R]:
    """Items from many concurrent callers, handled in shared flushes."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        alone: Callable[[T], Awaitable[R]],
        *,
        limit: int,
        size: Callable[[T], int] = lambda _item: 1,
        fallback_on: tuple[type[BaseException], ...] = (Exception,),
        name: str = "batcher",
    ) -> None:
        """`flush(items)` returns one result per item, in order; `alone(item)` handles one."""
        self._flush = flush
        self._alone = alone
        self._limit = limit
        self._size = size
        self._fallback_on = fallback_on
        self._name = name
        self._queue: list[_Waiter[T, R]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Handle `item` (in a flush shared with concurrent callers); returns after the flush."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name=self._name)
        return await done

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the callers of this loop turn join the first batch
        while self._queue:
            batch: list[_Waiter[T, R]] = []
            count = 0
            while self._queue and (
                not batch or count + self._size(self._queue[0][0]) <= self._limit
            ):
                waiter = self._queue.pop(0)
                batch.append(waiter)
                count += self._size(waiter[0])
            try:
                await self._together(batch)
            except BaseException as exc:
                # Whatever stopped this flush (shutdown, a cancelled task): no caller
                # may wait forever. Each waiter in the batch gets the error.
                _fail(batch, exc)
                if not isinstance(exc, Exception):
                    _fail(self._queue, exc)
                    self._queue.clear()
                    raise

    async def _together(self, batch: list[_Waiter[T, R]]) -> None:
        if len(batch) == 1:
            await self._one(batch[0])
            return
        try:
            results = await self._flush([item for item, _ in batch])
        except self._fallback_on:
            for waiter in batch:  # something in the batch broke the shared flush: each alone
                await self._one(waiter)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)

    async def _one(self, waiter: _Waiter[T, R]) -> None:
        item, done = waiter
        try:
            result = await self._alone(item)
        except Exception as exc:  # noqa: BLE001 - handed to its caller, not swallowed
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(result)


type _Waiter[T, R] = tuple[T, asyncio.Future[R]]

_INTERRUPTED: Final = "the flush was interrupted"


def _fail[T, R](waiters: list[_Waiter[T, R]], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else Interrupted(_INTERRUPTED)
    for _, done in waiters:
        if not done.done():
            done.set_exception(error)

"""The pixel budget: how many decoded image pixels one worker process holds at once.

A decoded image costs memory by its pixels, not by its file: a 0.2 MB PNG of
7000×7000 RGBA is 196 MB once decoded. Every running `image_resize` job of the
process reserves its image's pixels (after any JPEG draft scaling) before it
decodes, and gives them back when its decoding thread is done. A job that does
not fit waits, in arrival order, until enough is given back; an image larger
than the whole budget can never fit and is a permanent error.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ledger import jobtypes


class PixelBudget:
    """`total` pixels shared by the image jobs of one process (first come, first served)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def idle(self) -> bool:
        return self.used == 0 and not self._waiting

    async def acquire(self, pixels: int) -> None:
        """Reserve `pixels`, waiting for them if need be; Permanent if they can never fit."""
        if pixels > self.total:
            raise jobtypes.Permanent(
                f"image of {pixels} pixels is larger than this worker's whole decoding "
                f"budget of {self.total} pixels (IMAGE_DECODE_BUDGET_PIXELS)"
            )
        if not self._waiting and self.used + pixels <= self.total:
            self.used += pixels
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((pixels, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(pixels)  # granted just as it was cancelled: hand it on
            else:
                self._waiting.remove((pixels, granted))
                self._grant()  # whoever waited behind it may fit now
            raise

    def release(self, pixels: int) -> None:
        self.used -= pixels
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.used + self._waiting[0][0] <= self.total:
            pixels, granted = self._waiting.popleft()
            if granted.done():
                continue
            self.used += pixels
            granted.set_result(None)


_budget: PixelBudget | None = None


def budget(total: int) -> PixelBudget:
    """The process's budget of `total` pixels (made anew when the setting changed while idle)."""
    global _budget
    if _budget is None or (_budget.total != total and _budget.idle):
        _budget = PixelBudget(total)
    return _budget

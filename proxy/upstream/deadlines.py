"""One deadline for each call in flight, with one timer between all of them.

``Deadlines(seconds).run(call)`` is ``async with asyncio.timeout(seconds): await call``: the
call is cancelled at its deadline and the caller gets TimeoutError, while any other
cancellation goes through as it is. What differs is the timer. asyncio.timeout arms one per
call, and on uvloop that is a libuv timer made, started, stopped and closed every time, a cost
per forwarded call that one shared timer avoids (docs/design.md). Here the calls in flight wait
in a dict in the order they started, which, with one ``seconds`` for all and a monotonic clock,
is the order of their deadlines; a single timer is set for the earliest deadline pending when
it is set. When it fires it cancels the calls past their deadline and is set again for the
earliest left. Under load it fires about once every ``seconds``; when the upstream stalls, at
most once every ``TICK`` seconds, each time cancelling every call past its deadline, so a call
can end up to ``TICK`` late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
TICK = 0.01


class Deadlines:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        # The calls in flight, oldest first: task -> (deadline, its cancel requests at the start).
        self._due: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # Tasks cancelled here whose call has not ended yet -> their cancel requests at the start.
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """The calls in flight."""
        return len(self._due) + len(self._expired)

    async def run(self, call: Awaitable[T]) -> T:
        """``call``'s result, or TimeoutError once ``seconds`` have passed."""
        task = asyncio.current_task()
        if task is None or task in self._due or task in self._expired:
            if isinstance(call, Coroutine):
                call.close()  # never to run
            raise RuntimeError("Deadlines.run needs a task with no other call in it running")
        loop = task.get_loop()
        deadline = loop.time() + self._seconds
        self._due[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire, loop)
        try:
            return await call
        except asyncio.CancelledError as exc:
            cancelling = self._expired.pop(task, None)
            # Ours, unless someone else asked to cancel the task meanwhile (asyncio.timeout's
            # rule).
            if cancelling is not None and task.uncancel() <= cancelling:
                raise TimeoutError from exc
            raise
        finally:
            self._due.pop(task, None)
            if self._expired.pop(task, None) is not None:
                task.uncancel()  # it ended before the cancellation reached it

    def close(self) -> None:
        """Stop the timer (the calls still in flight are left to their tasks' owners)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the calls past their deadline; set the timer for the earliest left."""
        self._timer = None
        now = loop.time()
        past = []
        for task, (deadline, cancelling) in self._due.items():
            if deadline > now:
                self._timer = loop.call_at(max(deadline, now + TICK), self._expire, loop)
                break
            past.append((task, cancelling))
        for task, cancelling in past:
            del self._due[task]
            self._expired[task] = cancelling
            task.cancel()

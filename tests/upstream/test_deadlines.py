"""Deadlines: asyncio.timeout's behaviour for each call, one timer for all of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.upstream.deadlines import TICK, Deadlines


async def test_a_call_past_its_deadline_gets_timeout_error_on_time() -> None:
    deadlines = Deadlines(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.run(asyncio.sleep(10))
    took = loop.time() - started
    assert 0.05 <= took < 0.05 + TICK + 0.05
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # nothing left pending on the task
    assert len(deadlines) == 0


async def test_a_call_within_its_deadline_returns_its_result() -> None:
    deadlines = Deadlines(1.0)

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    assert await deadlines.run(answer()) == 42
    assert len(deadlines) == 0
    await asyncio.sleep(0)  # nothing else happens when the timer fires later
    deadlines.close()


async def test_another_cancellation_goes_through_as_it_is() -> None:
    deadlines = Deadlines(10.0)
    task = asyncio.create_task(deadlines.run(asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0
    deadlines.close()


async def test_a_cancellation_beside_the_deadline_is_not_taken_for_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task's owner cancels it in the same moment as its deadline passes: it must end
    cancelled (asyncio.timeout's rule), not with TimeoutError."""
    deadlines = Deadlines(0.02)
    task = asyncio.create_task(deadlines.run(asyncio.sleep(10)))
    expire = deadlines._expire

    def expire_and_cancel(loop: asyncio.AbstractEventLoop) -> None:
        expire(loop)
        task.cancel()  # the owner's request, before the task runs again

    monkeypatch.setattr(deadlines, "_expire", expire_and_cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1  # the owner's request stands; ours was withdrawn
    assert len(deadlines) == 0


async def test_many_calls_share_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    deadlines = Deadlines(0.1)

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if callback == deadlines._expire:
            armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)

    async def quick(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 5))
        return i

    async def stalled(i: int) -> int:
        await asyncio.sleep(10)
        return i

    calls = [deadlines.run(quick(i) if i % 10 else stalled(i)) for i in range(200)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    timed_out = [i for i, r in enumerate(results) if isinstance(r, TimeoutError)]
    assert timed_out == list(range(0, 200, 10))
    assert [r for r in results if not isinstance(r, BaseException)] == [
        i for i in range(200) if i % 10
    ]
    assert len(armed) <= 3  # one for the first deadline, one more for the stalled ones at most
    assert len(deadlines) == 0
    deadlines.close()


async def test_one_call_at_a_time_in_a_task() -> None:
    deadlines = Deadlines(1.0)

    async def nested() -> None:
        await deadlines.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError):
        await deadlines.run(nested())
    deadlines.close()

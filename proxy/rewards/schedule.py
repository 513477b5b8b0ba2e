"""When a scheduled trigger is open: plain functions over its ``Schedule`` and an instant.

A schedule is the span ``starts_at``..``ends_at`` cut, in its time zone, to the listed days
and, on each of them, to the hours (a span such as 22:00-02:00 belongs to the day it starts
on). Local times are wall-clock times, so 09:00 stays 09:00 across a change of daylight time.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import NamedTuple

from proxy.config.settings import Schedule

_DAY_MINUTES = 24 * 60
# Openings looked at from a moment on: a week, plus the day before (a span past midnight).
_HORIZON_DAYS = 9


class Opening(NamedTuple):
    open: bool
    opens_at: datetime | None  # the next opening when closed; None if it never opens again
    closes_at: datetime | None  # when the current (or, closed, the next) opening ends


def opening(schedule: Schedule, now: datetime) -> Opening:
    """Whether ``schedule`` is open at ``now`` (aware), and its next change."""
    lo, hi = schedule.starts_at, schedule.ends_at
    if hi is not None and now >= hi:
        return Opening(False, None, None)
    if schedule.days is None and schedule.hours is None:  # the span alone
        return Opening(True, None, hi) if lo is None or now >= lo else Opening(False, lo, hi)
    probe = now if lo is None or now >= lo else lo
    for start, end in _merged(schedule, probe):
        if end <= probe:
            continue
        start = start if lo is None else max(start, lo)
        end = end if hi is None else min(end, hi)
        if start >= end:
            break
        if start <= now:
            return Opening(True, None, end)
        return Opening(False, start, end)
    return Opening(False, None, None)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _spans(schedule: Schedule, probe: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Each day's opening, in order, from the day before ``probe``'s, over the horizon."""
    zone = _zone(schedule.timezone)
    first, last = schedule.hours or (0, _DAY_MINUTES)
    if last <= first:
        last += _DAY_MINUTES
    day = probe.astimezone(zone).date() - timedelta(days=1)
    for _ in range(_HORIZON_DAYS):
        if schedule.days is None or day.weekday() in schedule.days:
            midnight = datetime.combine(day, time(), zone)
            yield midnight + timedelta(minutes=first), midnight + timedelta(minutes=last)
        day += timedelta(days=1)


def _merged(schedule: Schedule, probe: datetime) -> Iterator[tuple[datetime, datetime]]:
    """``_spans`` with touching ones joined (whole days in a row are one opening)."""
    current: tuple[datetime, datetime] | None = None
    for start, end in _spans(schedule, probe):
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            yield current
        current = (start, end)
    if current is not None:
        yield current

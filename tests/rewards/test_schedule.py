"""When a scheduled trigger is open, read off its schedule at chosen instants."""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.config.settings import Schedule
from proxy.rewards.schedule import Opening, opening

PARIS = "Europe/Paris"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_span_alone_is_open_between_its_ends_and_says_when() -> None:
    span = Schedule(starts_at=at("2026-12-01T09:00:00Z"), ends_at=at("2026-12-24T18:00:00Z"))
    assert opening(span, at("2026-11-30T09:00:00Z")) == Opening(
        False, at("2026-12-01T09:00:00Z"), at("2026-12-24T18:00:00Z")
    )
    assert opening(span, at("2026-12-10T00:00:00Z")) == Opening(
        True, None, at("2026-12-24T18:00:00Z")
    )
    assert opening(span, at("2026-12-24T18:00:00Z")) == Opening(False, None, None)


def test_hours_are_read_in_the_time_zone_and_reopen_the_next_day() -> None:
    hours = Schedule(hours=(9 * 60, 17 * 60), timezone=PARIS)  # 09:00-17:00 Paris (UTC+1)
    assert opening(hours, at("2026-12-02T08:30:00Z")) == Opening(
        True, None, at("2026-12-02T16:00:00Z")
    )
    assert opening(hours, at("2026-12-02T16:00:00Z")) == Opening(
        False, at("2026-12-03T08:00:00Z"), at("2026-12-03T16:00:00Z")
    )


def test_a_span_past_midnight_belongs_to_the_day_it_starts_on() -> None:
    # Fridays 22:00-02:00 UTC: open on Saturday 01:00, closed on Friday 01:00.
    late = Schedule(days=(4,), hours=(22 * 60, 2 * 60))
    assert opening(late, at("2026-12-05T01:00:00Z")).open  # a Saturday
    closed = opening(late, at("2026-12-04T01:00:00Z"))  # a Friday
    assert closed == Opening(False, at("2026-12-04T22:00:00Z"), at("2026-12-05T02:00:00Z"))


def test_whole_days_in_a_row_are_one_opening() -> None:
    weekend = Schedule(days=(5, 6))
    state = opening(weekend, at("2026-12-05T12:00:00Z"))  # Saturday noon
    assert state == Opening(True, None, at("2026-12-07T00:00:00Z"))
    monday = opening(weekend, at("2026-12-07T00:00:00Z"))
    assert monday == Opening(False, at("2026-12-12T00:00:00Z"), at("2026-12-14T00:00:00Z"))


def test_an_opening_past_ends_at_is_never_and_one_cut_by_it_closes_then() -> None:
    cut = Schedule(ends_at=at("2026-12-02T12:00:00Z"), hours=(9 * 60, 17 * 60))
    assert opening(cut, at("2026-12-02T10:00:00Z")) == Opening(
        True, None, at("2026-12-02T12:00:00Z")
    )
    assert opening(cut, at("2026-12-02T08:00:00Z")).opens_at == at("2026-12-02T09:00:00Z")
    evening = Schedule(ends_at=at("2026-12-02T18:00:00Z"), hours=(9 * 60, 17 * 60))
    assert opening(evening, at("2026-12-02T17:30:00Z")) == Opening(False, None, None)


def test_a_later_start_is_where_the_search_begins() -> None:
    later = Schedule(starts_at=at("2027-03-10T00:00:00Z"), days=(0,), timezone="UTC")
    state = opening(later, datetime(2026, 12, 2, tzinfo=UTC))
    assert state == Opening(False, at("2027-03-15T00:00:00Z"), at("2027-03-16T00:00:00Z"))


def test_wall_clock_hours_hold_across_a_daylight_change() -> None:
    # Paris leaves summer time on 2026-10-25: 09:00 is 07:00 UTC before and 08:00 after.
    hours = Schedule(hours=(9 * 60, 10 * 60), timezone=PARIS)
    assert opening(hours, at("2026-10-24T07:30:00Z")).open
    assert not opening(hours, at("2026-10-26T07:30:00Z")).open
    assert opening(hours, at("2026-10-26T08:30:00Z")).open

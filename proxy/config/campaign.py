"""Reading a trigger's campaign keys: its schedule, coin budgets, dry run and human check,
each checked on its own and against the trigger's override, with the key named."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Any

from proxy.config.reader import Reader
from proxy.config.schema import ConfigError, Rate
from proxy.config.triggers import (
    CHALLENGE_PROVIDERS,
    DAYS,
    Schedule,
    TriggerSettings,
    WalletOverride,
)

CAMPAIGN_KEYS = (
    "starts_at",
    "ends_at",
    "days",
    "hours",
    "timezone",
    "coin_budget",
    "customer_coins",
    "dry_run",
    "challenge",
)
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def read_campaign(r: Reader, wallet: WalletOverride | None) -> dict[str, Any]:
    """The campaign fields of ``TriggerSettings`` read from the trigger's table ``r``."""
    budgets = {name: r.rate(name, None) for name in ("coin_budget", "customer_coins")}  # type: ignore[arg-type]
    for name, rate in budgets.items():
        if rate is not None:
            _check_budget(r.key(name), rate, wallet)
    challenge = r.string("challenge")
    if challenge is not None and challenge not in CHALLENGE_PROVIDERS:
        raise ConfigError(
            r.key("challenge"), "must be " + " or ".join(f'"{p}"' for p in CHALLENGE_PROVIDERS)
        )
    return {
        "schedule": _read_schedule(r),
        **budgets,
        "dry_run": r.boolean("dry_run", False),
        "challenge": challenge,
    }


def _check_budget(key: str, rate: Rate, wallet: WalletOverride | None) -> None:
    if wallet is None or wallet.operation != "cr":
        raise ConfigError(
            key, "needs a crediting wallet override with a coin_range (what it reserves)"
        )
    if wallet.coin_max > rate.limit:
        raise ConfigError(
            key, f"{rate.limit} coins is less than one reward's coin_range max ({wallet.coin_max})"
        )


def _read_schedule(r: Reader) -> Schedule | None:
    if not any(name in r.data for name in CAMPAIGN_KEYS[:5]):
        return None
    name = r.string("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise ConfigError(r.key("timezone"), f"{name!r} is not an IANA time zone") from exc
    starts_at, ends_at = _instant(r, "starts_at"), _instant(r, "ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ConfigError(r.key("ends_at"), "must be after starts_at")
    days = None
    if "days" in r.data:
        named = r.strings("days", ())
        wrong = [d for d in named if d not in DAYS]
        if wrong or not named:
            raise ConfigError(r.key("days"), "must list days among " + ", ".join(DAYS))
        days = tuple(sorted({DAYS.index(d) for d in named}))
        days = None if len(days) == len(DAYS) else days
    hours = None
    text = r.string("hours")
    if text is not None:
        match = _HOURS.match(text)
        if match is None:
            raise ConfigError(r.key("hours"), f"{text!r} is not like '09:00-17:30'")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        hours = (h1 * 60 + m1, h2 * 60 + m2)
        if hours[0] == hours[1] or hours[1] > 24 * 60:
            raise ConfigError(r.key("hours"), f"{text!r} is an empty or impossible span")
        hours = None if hours == (0, 24 * 60) else hours
    return Schedule(starts_at, ends_at, days, hours, name)


def _instant(r: Reader, name: str) -> datetime | None:
    """An RFC 3339 instant: TOML's own offset date-time, or a string of one."""
    value = r.data.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(r.key(name), f"{value!r} is not an RFC 3339 date-time") from exc
    if not isinstance(value, datetime):
        raise ConfigError(r.key(name), "must be an RFC 3339 date-time with an offset")
    if value.tzinfo is None:
        raise ConfigError(r.key(name), "needs an offset (e.g. Z or +01:00): an instant")
    return value


def describe_campaign(t: TriggerSettings) -> str:
    """A trigger's campaign controls as check-config shows them ("" for none)."""
    shown = []
    s = t.schedule
    if s is not None:
        span = f"{_shown(s.starts_at)}..{_shown(s.ends_at)}"
        days = "" if s.days is None else " " + ",".join(DAYS[d] for d in s.days)
        hours = "" if s.hours is None else " " + hours_text(s.hours)
        shown.append(f"schedule={span}{days}{hours} {s.timezone}")
    for name in ("coin_budget", "customer_coins"):
        rate = getattr(t, name)
        if rate is not None:
            shown.append(f"{name}={rate.limit} coins/{rate.seconds}s")
    if t.dry_run:
        shown.append("dry_run")
    if t.challenge is not None:
        shown.append(f"challenge={t.challenge}")
    return "".join(" " + part for part in shown)


def _shown(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat().replace("+00:00", "Z")


def hours_text(hours: tuple[int, int]) -> str:
    """``Schedule.hours`` as the config writes them: "HH:MM-HH:MM"."""
    (h1, m1), (h2, m2) = divmod(hours[0], 60), divmod(hours[1], 60)
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"

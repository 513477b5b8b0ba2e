"""A trigger's campaign controls on the reward path: its schedule, its coin budgets, its dry
run and its human check, each decided before Nector is called.

The order within the reward path (``gateway``): the schedule right after the trigger and its
source (a closed campaign spends nothing), then the human check before the limit store (no
quota for a bot), unless the request's Idempotency-Key already has an answer (a retry replays
it without a second check: tokens are single-use), then the coin budgets inside the store's
one atomic decision. What the widget may show of all this is built once here, but for the
schedule's open/opens_at/closes_at, computed per request.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proxy.config.campaign import hours_text
from proxy.config.settings import Rate, Schedule, TriggerSettings
from proxy.config.triggers import DAYS
from proxy.errors import TriggerNotActive
from proxy.http.body import read_answer
from proxy.rewards.schedule import Opening, opening

# How long a widget may keep a trigger's public view, at most.
SHOWN_SECONDS = 300
_PERIODS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


@dataclass(frozen=True, slots=True)
class Campaign:
    """The controls of one trigger, computed once from its settings."""

    schedule: Schedule | None
    coin_budget: Rate | None
    customer_coins: Rate | None
    reserve: int  # coins a reward may pay at most: its coin_range's maximum
    coin_range: tuple[int, int] | None
    operation: str
    offer_id: str | None  # an offer override's, for a dry run's answer
    dry_run: bool
    challenge: str | None
    title: str
    public: dict[str, Any]  # the view's fixed fields, the schedule last
    # The schedule's last state: (computed at, holds until, state), kept until it changes.
    known: list[tuple[float, float, Opening] | None] = field(default_factory=lambda: [None])

    def opening(self, now: float) -> Opening:
        """The schedule's state at ``now`` (a scheduled campaign's only)."""
        assert self.schedule is not None
        known = self.known[0]
        if known is not None and known[0] <= now < known[1]:
            return known[2]
        state = opening(self.schedule, datetime.fromtimestamp(now, UTC))
        change = state.closes_at if state.open else state.opens_at
        self.known[0] = (now, math.inf if change is None else change.timestamp(), state)
        return state

    def check_open(self, now: float) -> None:
        """Raise ``TriggerNotActive`` (with when it opens next) outside the schedule."""
        if self.schedule is None:
            return
        state = self.opening(now)
        if state.open:
            return
        headers = None
        if state.opens_at is not None:
            wait = max(1, int(state.opens_at.timestamp() - now + 0.999))
            headers = [(b"retry-after", b"%d" % wait)]
        raise TriggerNotActive(headers=headers, details={"opens_at": rfc3339(state.opens_at)})

    def view(self, public: bytes, now: float) -> tuple[bytes, int]:
        """A scheduled trigger's public view at ``now``, and for how many seconds it holds:
        its pre-built ``public`` view, whose last field is the schedule, with the schedule's
        state now added to it."""
        state = self.opening(now)
        computed = json.dumps(_state(state), separators=(",", ":")).encode()
        fresh = SHOWN_SECONDS
        change = state.closes_at if state.open else state.opens_at
        if change is not None:
            fresh = max(0, min(fresh, int(change.timestamp() - now)))
        return public[:-3] + b"," + computed[1:] + b"}}", fresh

    def dry_run_answer(self, trigger_id: str, draw: random.Random) -> tuple[bytes, int]:
        """Nector's envelope as for a real reward, marked ``dry_run``, and the coins in it."""
        activity: dict[str, Any] = {"_id": f"dry-run-{uuid.uuid4()}", "trigger_id": trigger_id}
        activity |= {"created_at": int(time.time()), "meta": {"title": self.title}}
        data: dict[str, Any] = {"activity": activity}
        coins = 0
        if self.coin_range is not None:
            coins = draw.randint(*self.coin_range)
            data["wallet_reward"] = {"coins": coins, "operation": self.operation}
        if self.offer_id is not None:  # not issued: a dry run issues nothing
            data["offer_reward"] = {"offer_id": self.offer_id, "status": "dry_run"}
        answer = {"meta": {"status": "success"}, "data": data, "dry_run": True}
        return json.dumps(answer, separators=(",", ":")).encode(), coins


def build_campaign(t: TriggerSettings, site_key: str) -> Campaign | None:
    """The controls of ``t``, or None when it has none."""
    if not (t.schedule or t.coin_budget or t.customer_coins or t.dry_run or t.challenge):
        return None
    wallet = t.wallet
    public: dict[str, Any] = {}
    if t.coin_budget is not None:
        public["coin_budget"] = _budget(t.coin_budget)
    if t.customer_coins is not None:
        public["customer_coins"] = _budget(t.customer_coins)
    if t.dry_run:
        public["dry_run"] = True
    if t.challenge is not None:
        public["challenge"] = {"provider": t.challenge, "site_key": site_key}
    if t.schedule is not None:  # last: its state is added to it at each request (view)
        public["schedule"] = _schedule(t.schedule)
    return Campaign(
        schedule=t.schedule,
        coin_budget=t.coin_budget,
        customer_coins=t.customer_coins,
        reserve=0 if wallet is None else wallet.coin_max,
        coin_range=None if wallet is None else (wallet.coin_min, wallet.coin_max),
        operation="cr" if wallet is None else wallet.operation,
        offer_id=None if t.offer is None else t.offer.offer_id,
        dry_run=t.dry_run,
        challenge=t.challenge,
        title=wallet.title if wallet is not None else t.name or t.id,
        public=public,
    )


def paid_coins(status: int, body: bytes, reserved: int) -> int:
    """What Nector's answer says it paid: a success's ``wallet_reward.coins``; none for an
    error it answered itself (it rewarded nothing); else the reservation stands."""
    try:
        answer = read_answer(body)
    except (ValueError, RecursionError):
        return reserved
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), dict):
        return reserved
    if 200 <= status < 300:
        reward = answer["data"].get("wallet_reward")
        coins = reward.get("coins") if isinstance(reward, dict) else None
        if isinstance(coins, int) and not isinstance(coins, bool) and coins >= 0:
            return coins
        return reserved
    meta = answer.get("meta")
    if 400 <= status < 500 and isinstance(meta, dict) and meta.get("status") == "error":
        return 0
    return reserved


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _schedule(s: Schedule) -> dict[str, Any]:
    return {
        "starts_at": rfc3339(s.starts_at),
        "ends_at": rfc3339(s.ends_at),
        "days": None if s.days is None else [DAYS[d] for d in s.days],
        "hours": None if s.hours is None else hours_text(s.hours),
        "timezone": s.timezone,
    }


def _state(state: Opening) -> dict[str, Any]:
    return {
        "open": state.open,
        "opens_at": rfc3339(state.opens_at),
        "closes_at": rfc3339(state.closes_at),
    }


def _budget(rate: Rate) -> dict[str, Any]:
    for seconds, name in _PERIODS:
        if rate.seconds % seconds == 0:
            count = rate.seconds // seconds
            period = name if count == 1 else f"{count} {name}s"
            return {"coins": rate.limit, "period": period}
    raise AssertionError("a rate's seconds are a whole number")

"""A trigger's shape: its allow-list entry, the reward override the proxy sends, and the
campaign controls (schedule, coin budgets, dry run, human check) that decide before Nector.

Reading and checking the campaign keys is ``campaign.py``'s; the rest of a trigger,
``sections.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from proxy.config.schema import SOURCES, Rate

# Days as the config names them, Monday first (datetime.weekday's order).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHALLENGE_PROVIDERS = ("turnstile", "hcaptcha", "recaptcha")
ChallengeProvider = Literal["turnstile", "hcaptcha", "recaptcha"]


@dataclass(frozen=True, slots=True)
class WalletOverride:
    title: str
    operation: Literal["cr", "dr"]
    coin_min: int
    coin_max: int
    description: str | None = None


@dataclass(frozen=True, slots=True)
class OfferOverride:
    offer_id: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a trigger rewards: between ``starts_at`` and ``ends_at`` (aware datetimes), and
    within them on ``days`` (indexes into ``DAYS``) during ``hours`` (minutes after
    midnight, start and end; an end before the start runs past midnight), in ``timezone``."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    days: tuple[int, ...] | None = None
    hours: tuple[int, int] | None = None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    id: str
    name: str | None = None
    sources: frozenset[str] = frozenset(SOURCES)
    per_customer: tuple[Rate, ...] | None = None
    allow_debit: bool = False
    wallet: WalletOverride | None = None
    offer: OfferOverride | None = None
    schedule: Schedule | None = None
    coin_budget: Rate | None = None  # coins the whole campaign gives per window
    customer_coins: Rate | None = None  # coins one customer gets per window
    dry_run: bool = False  # every check as usual, nothing sent to Nector
    challenge: ChallengeProvider | None = None  # the human check a reward needs

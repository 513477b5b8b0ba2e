"""The ``[redemption]`` section: customers spending their own coins on offers (off by default).

Nector's widget redeems an offer with ``POST /api/v2/merchant/offerredeems`` ``{offer_id,
lead_id, step}``. The proxy serves it only when enabled, only for offers listed here (or every
offer with ``offers = ["all"]``), for the session's own lead, at most ``per_customer`` times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from proxy.config.schema import ConfigError, Rate, rates_text, setting

ALL_OFFERS = "all"
MAX_STEP = 10  # Nector's widget offers at most ten steps of an offer at once


def _offers(key: str, offers: tuple[str, ...]) -> Any:
    if offers == (ALL_OFFERS,):
        return offers
    kept = []
    for offer in offers:
        try:
            parsed = uuid.UUID(offer)
        except ValueError as exc:
            raise ConfigError(
                key, f'{offer!r} is not an offer id (a UUID), or use ["all"]'
            ) from exc
        kept.append(str(parsed))
    return tuple(dict.fromkeys(kept))


@dataclass(frozen=True, slots=True)
class RedemptionSettings:
    enabled: bool = setting(False)
    offers: tuple[str, ...] = setting((), check=_offers)  # offer ids, or ["all"]
    per_customer: tuple[Rate, ...] = setting((Rate(5, 86400),))  # redemptions per customer

    def __post_init__(self) -> None:
        if self.enabled and not self.offers:
            raise ConfigError("redemption.offers", 'is empty: list offer ids, or ["all"]')

    def allows(self, offer_id: str) -> bool:
        return self.enabled and (self.offers == (ALL_OFFERS,) or offer_id in self.offers)

    def describe(self) -> str:
        """``check-config``'s line on redemption: whether it is on, for which offers, how often."""
        if not self.enabled:
            return "redemption: off (redemption.enabled = false)"
        offers = "every offer" if self.offers == (ALL_OFFERS,) else f"{len(self.offers)} offer(s)"
        return f"redemption: on for {offers}, per customer {rates_text(self.per_customer)}"

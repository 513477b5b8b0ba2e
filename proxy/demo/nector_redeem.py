"""The stand-in's redemption: ``POST offerredeems`` ``{offer_id, lead_id, step}`` spends the
lead's coins (the offer's ``rule.coin_amount`` a step) and issues a coupon, answered as Nector's
widget reads it (``data.coupon`` with ``_id`` and ``lead_id``); too few coins is a 422."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any, Protocol

from starlette.responses import JSONResponse

from .nector_state import Lead, error


class Offers(Protocol):
    offers: dict[str, dict[str, Any]]

    def find_lead(
        self, *, customer_id: str | None = None, lead_id: str | None = None
    ) -> Lead | None: ...


def redeem(nector: Offers, body: Any) -> JSONResponse:
    if not isinstance(body, dict) or set(body) - {"offer_id", "lead_id", "step"}:
        return error(400, "body must be {offer_id, lead_id, step}")
    offer = nector.offers.get(str(body.get("offer_id")))
    if offer is None:
        return error(404, "Offer does not exists")
    lead = nector.find_lead(lead_id=body.get("lead_id")) if body.get("lead_id") else None
    if lead is None:
        return error(422, "Lead does not exists")
    step = body.get("step", 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        return error(400, "step must be a positive number")
    cost = int((offer.get("rule") or {}).get("coin_amount", 0)) * step
    if lead.available < cost:
        return error(422, "Not enough coins to redeem this offer")
    lead.available -= cost
    now = int(time.time())
    lead.transactions.append(
        {"_id": str(uuid.uuid4()), "lead_id": lead.id, "amount": cost, "operation": "dr"}
        | {"title": f"Redeemed {offer.get('name', 'an offer')}", "created_at": now}
    )
    coupon = {"_id": str(uuid.uuid4()), "lead_id": lead.id, "type": "code", "created_at": now}
    coupon |= {"value": "NECTOR-" + secrets.token_hex(3).upper(), "offer": offer}
    lead.coupons.append(coupon)
    return JSONResponse({"meta": {"status": "success"}, "data": {"coupon": coupon}})

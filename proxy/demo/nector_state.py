"""The stand-in's records (calls received, leads) and its answers' shape: Nector's envelope."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.responses import JSONResponse


@dataclass
class Call:
    headers: dict[str, str]
    body: Any
    method: str = "POST"
    path: str = "/api/v2/merchant/activities"
    query: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Lead:
    """A customer as Nector keeps it: its own ``_id``, and the merchant's customer id if any."""

    id: str
    customer_id: str | None = None
    name: str = "Customer"
    available: int = 0  # the coin balance
    transactions: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    coupons: list[dict[str, Any]] = field(default_factory=list)

    def item(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "customer_id": self.customer_id,
            "name": self.name,
            "available": self.available,
            "tier": {"name": "Silver"},
            "referral_code": "REF" + self.id[:6].upper(),
            "metadetail": {},
        }


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"meta": {"status": "error", "code": status}, "data": {"message": message}}, status
    )


def check_lead_token(header: str | None, lead_id: str | None, secret: str) -> str | None:
    """A storefront key's proof of the lead: None if ``header`` holds it for ``lead_id``."""
    if lead_id is None:
        return "a storefront key needs lead-level authentication"
    if header is None:
        return "x-leadtoken is required for a storefront key"
    try:
        claims = jwt.decode(header, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return "invalid x-leadtoken"
    if claims.get("lead_id") != lead_id or claims["exp"] > time.time() + 3600:
        return "invalid x-leadtoken"
    return None

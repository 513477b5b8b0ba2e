"""A stand-in for Nector's "Reward Using Trigger" call, for the demo and the tests.

It behaves as Nector's public API reference and its own storefront widget show the real service
(joinnector/joinnector-resources, joinnector-merchant-websdk): it checks the three headers and
the key, knows a few triggers and customers, keeps wallet balances, applies ``coin_range`` and
offers only on triggers whose "Allow override" is on, and answers Nector's envelope (``{"meta":
{...}, "data": {...}}``): success with ``activity`` and ``wallet_reward``, 422 "Lead does not
exists" for an unknown lead, the error envelope for bad calls. It enforces Nector's "strict
param check": strings must be strings, numbers numbers. Given a ``lead_token_secret`` it plays
a STOREFRONT-purpose key: every call must carry an ``x-leadtoken`` (HS256 JWT of the body's
lead_id, unexpired) signed with that secret.

Run it alone for local development against a real proxy:

    python -m proxy.demo.nector --port 9000   (prints the key and workspace id it accepts)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .nector_reads import read_routes
from .nector_redeem import redeem
from .nector_state import Call, Lead, check_lead_token, error

SOURCES = ("mobile", "unix", "web")
_BODY_FIELDS = {
    "trigger_id",
    "customer_id",
    "lead_id",
    "referral_code",
    "name",
    "metadetail",
    "trace",
}


@dataclass
class StandInTrigger:
    id: str
    coins: int = 10  # what the trigger pays when no override applies
    allow_override: bool = False
    name: str = "trigger"
    description: str = ""  # its "ways to earn" line; by default what it pays


@dataclass
class NectorStandIn:
    """State and behaviour of the stand-in; ``app`` is its ASGI application."""

    api_key: str
    workspace_id: str
    triggers: dict[str, StandInTrigger] = field(default_factory=dict)
    leads: dict[str, Lead] = field(default_factory=dict)  # by lead id
    create_customers: bool = True  # a new customer_id is created on first reward
    delay_seconds: float = 0.0
    seed: int | None = None
    calls: list[Call] = field(default_factory=list)
    lead_token_secret: str | None = None  # set: the key is a storefront-purpose one
    offers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by offer id
    # Set: every reward call fails with this status, as Nector does past its cap (429, with
    # this Retry-After) or when it is down (5xx). For tests of what a customer then sees.
    outage: int | None = None
    outage_retry_after: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - a demo, not cryptography
        self.app = Starlette(
            routes=[
                Route("/api/v2/merchant/activities", self._activities, methods=["POST"]),
                Route("/api/v2/merchant/offerredeems", self._redeem, methods=["POST"]),
                *read_routes(self),
            ]
        )

    def add_trigger(self, trigger: StandInTrigger) -> None:
        self.triggers[trigger.id] = trigger

    def add_lead(self, *, customer_id: str | None = None, lead_id: str | None = None) -> Lead:
        lead = Lead(lead_id or str(uuid.uuid4()), customer_id)
        self.leads[lead.id] = lead
        return lead

    def find_lead(
        self, *, customer_id: str | None = None, lead_id: str | None = None
    ) -> Lead | None:
        if lead_id is not None:
            return self.leads.get(lead_id)
        return next((x for x in self.leads.values() if x.customer_id == customer_id), None)

    def authorized(self, request: Request) -> JSONResponse | None:
        """The answer to a call without this workspace's key, or None."""
        if request.headers.get("x-apikey") != self.api_key:
            return error(401, "invalid api key")
        if request.headers.get("x-workspaceid") != self.workspace_id:
            return error(401, "invalid workspace")
        if request.headers.get("x-source") not in SOURCES:
            return error(400, "x-source must be one of mobile, unix, web")
        return None

    async def _activities(self, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.calls.append(Call(dict(request.headers), body))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        refused = self.authorized(request)
        if refused is not None:
            return refused
        if self.outage is not None:
            retry = self.outage_retry_after
            answer = error(self.outage, "Too many requests" if self.outage == 429 else "failed")
            if retry is not None:
                answer.headers["retry-after"] = str(retry)
            return answer
        if not raw or not isinstance(body, dict):
            return error(400, "body must be a json object")
        problem = _check_body(body)
        if problem:
            return error(400, problem)
        if self.lead_token_secret is not None:
            token = request.headers.get("x-leadtoken")
            problem = check_lead_token(token, body.get("lead_id"), self.lead_token_secret)
            if problem:
                return error(401, problem)
        trigger = self.triggers.get(body["trigger_id"])
        if trigger is None:
            return error(404, "Trigger does not exists")
        lead = self.find_lead(customer_id=body.get("customer_id"), lead_id=body.get("lead_id"))
        if lead is None:
            if "lead_id" in body or not self.create_customers:
                return error(422, "Lead does not exists")
            lead = self.add_lead(customer_id=body["customer_id"])
        return self._reward(trigger, lead, body.get("trace") or {})

    async def _redeem(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.calls.append(Call(dict(request.headers), body, path=request.url.path))
        refused = self.authorized(request)
        if refused is not None:
            return refused
        if self.lead_token_secret is not None:
            token = request.headers.get("x-leadtoken")
            problem = check_lead_token(token, body.get("lead_id"), self.lead_token_secret)
            if problem:
                return error(401, problem)
        return redeem(self, body)

    def _reward(self, trigger: StandInTrigger, lead: Lead, trace: dict[str, Any]) -> JSONResponse:
        coins, operation, offer = trigger.coins, "cr", None
        if trigger.allow_override:
            wallet = trace.get("via_api_for_wallet")
            if wallet:
                low, high = wallet["coin_range"]["min"], wallet["coin_range"]["max"]
                coins, operation = self._random.randint(low, high), wallet["operation"]
            if trace.get("via_api_for_offer"):
                offer = {"offer_id": trace["via_api_for_offer"]["offer_id"], "status": "issued"}
        lead.available += coins if operation == "cr" else -coins
        now = int(time.time())
        title = trace.get("via_api_for_wallet", {}).get("title") or trigger.name
        activity: dict[str, Any] = {"_id": str(uuid.uuid4()), "trigger_id": trigger.id}
        activity |= {"lead_id": lead.id, "created_at": now, "meta": {"title": title}}
        lead.activities.append(activity)
        lead.transactions.append(
            {"_id": str(uuid.uuid4()), "lead_id": lead.id, "amount": coins}
            | {"operation": operation, "title": title, "created_at": now}
        )
        data: dict[str, Any] = {
            "activity": activity,
            "wallet_reward": {"coins": coins, "operation": operation, "balance": lead.available},
        }
        if offer:
            data["offer_reward"] = offer
            lead.coupons.append(
                {"_id": str(uuid.uuid4()), "lead_id": lead.id, "type": "code"}
                | {"value": "SPIN-" + secrets.token_hex(3).upper(), "created_at": now}
                | {"offer": self.offers.get(offer["offer_id"], {"_id": offer["offer_id"]})}
            )
        return JSONResponse({"meta": {"status": "success"}, "data": data})


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_body(body: dict[str, Any]) -> str | None:
    unknown = set(body) - _BODY_FIELDS
    if unknown:
        return f"{sorted(unknown)[0]} is not allowed"
    if not _is_uuid(body.get("trigger_id")):
        return "trigger_id must be a uuid"
    has_customer, has_lead = "customer_id" in body, "lead_id" in body
    if has_customer == has_lead:
        return "one of customer_id or lead_id is required"
    if has_customer:
        cid = body["customer_id"]
        if not isinstance(cid, str) or not 8 <= len(cid) <= 128:
            return "customer_id must be a string of 8-128 characters"
    if has_lead and not _is_uuid(body["lead_id"]):
        return "lead_id must be a uuid"
    for key in ("name", "referral_code"):
        if key in body and not isinstance(body[key], str):
            return f"{key} must be a string"
    if "metadetail" in body and not isinstance(body["metadetail"], dict):
        return "metadetail must be an object"
    trace = body.get("trace")
    if trace is not None:
        if not isinstance(trace, dict):
            return "trace must be an object"
        wallet = trace.get("via_api_for_wallet")
        if wallet is not None:
            ok = (
                isinstance(wallet, dict)
                and isinstance(wallet.get("title"), str)
                and wallet.get("operation") in ("cr", "dr")
                and isinstance(wallet.get("coin_range"), dict)
                and all(isinstance(wallet["coin_range"].get(k), int) for k in ("min", "max"))
            )
            if not ok:
                return "trace.via_api_for_wallet is malformed"
        offer = trace.get("via_api_for_offer")
        if offer is not None and not (isinstance(offer, dict) and _is_uuid(offer.get("offer_id"))):
            return "trace.via_api_for_offer is malformed"
    return None


def main() -> None:  # pragma: no cover - a developer's convenience
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the Nector stand-in on 127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--trigger", action="append", default=[], help="a trigger id to know")
    parser.add_argument("--api-key", help="the key it accepts (default: a random one)")
    parser.add_argument("--workspace-id", help="the workspace it accepts (default: random)")
    args = parser.parse_args()
    stand_in = NectorStandIn(
        api_key=args.api_key or "ak_" + secrets.token_hex(32),
        workspace_id=args.workspace_id or "shopify-" + secrets.token_hex(6),
    )
    for trigger_id in args.trigger:
        stand_in.add_trigger(StandInTrigger(trigger_id, allow_override=True))
    # These are the stand-in's own throwaway credentials, made up for this run: printing them
    # is how a developer points a local proxy at it.
    print(f"TRIGGER_PROXY_API_KEY={stand_in.api_key}")
    print(f"TRIGGER_PROXY_WORKSPACE_ID={stand_in.workspace_id}")
    print(f"TRIGGER_PROXY_UPSTREAM_URL=http://127.0.0.1:{args.port}/api/v2/merchant/activities")
    uvicorn.run(stand_in.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()

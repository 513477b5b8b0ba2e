"""The stand-in's reads: the GETs Nector's own widget makes (docs/api.md, "Reads"),
answered from the stand-in's state in Nector's envelope.

Lists answer ``{"items": [...], "count": n}``, single records ``{"item": {...}}``. The
customer-scoped lists need ``lead_id``; with a storefront-purpose key every customer-scoped read
also needs an ``x-leadtoken`` for the lead it reads. The stand-in is strict where Nector's
behaviour is not documented: a query parameter it does not know is a 400, so a proxy that sent
one would be caught by the tests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .nector_state import Call, Lead, check_lead_token, error


class StandIn(Protocol):
    """What the reads need of ``nector.NectorStandIn``."""

    calls: list[Call]
    leads: dict[str, Lead]
    triggers: dict[str, Any]
    offers: dict[str, dict[str, Any]]
    lead_token_secret: str | None
    delay_seconds: float

    def authorized(self, request: Request) -> JSONResponse | None: ...

    def find_lead(
        self, *, customer_id: str | None = None, lead_id: str | None = None
    ) -> Lead | None: ...


PREFIX = "/api/v2/merchant/"
_PAGING = {"page", "limit", "sort", "sort_op"}
ENTITY_ID = "demo-store"
SHOP_LINK = "https://shop.example.com/pages/rewards"
# The widget's look (its colours, texts), as the workspace's one websdk config.
WEBSDK_CONFIG = {"_id": "websdk-1", "business_color": "#3b2f8f", "text_color": "#ffffff"}
Handler = Callable[[Request], Awaitable[Response]]


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"meta": {"status": "success"}, "data": data})


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """One page of ``items``, newest first unless sort_op says ASC."""
    page, limit = int(query.get("page", "1")), int(query.get("limit", "10"))
    ordered = sorted(
        items, key=lambda x: x.get("created_at", 0), reverse=query.get("sort_op") != "ASC"
    )
    return {"items": ordered[(page - 1) * limit : page * limit], "count": len(items)}


def _checked_query(request: Request, allowed: set[str]) -> dict[str, str] | JSONResponse:
    query = dict(request.query_params)
    for key in request.query_params:
        if key not in allowed:
            return error(400, f"{key} is not allowed")
    for key in ("page", "limit"):
        if key in query and not (query[key].isdigit() and int(query[key]) >= 1):
            return error(400, f"{key} must be a positive number")
    return query


def _earn(trigger: Any) -> str:
    """A trigger's ways-to-earn line: its own, or what it pays."""
    return str(trigger.description or f"Earn {trigger.coins} coins")


def read_routes(nector: StandIn) -> list[Route]:
    """The read routes, bound to ``nector``'s state."""

    def route(path: str, handler: Handler) -> Route:
        async def recorded(request: Request) -> Response:
            nector.calls.append(
                Call(
                    dict(request.headers),
                    None,
                    "GET",
                    request.url.path,
                    list(request.query_params.multi_items()),
                )
            )
            if nector.delay_seconds:
                await asyncio.sleep(nector.delay_seconds)
            refused = nector.authorized(request)
            return refused if refused is not None else await handler(request)

        return Route(PREFIX + path, recorded, methods=["GET"])

    def lead_of(request: Request, lead_id: str | None) -> Lead | JSONResponse:
        """The lead a customer-scoped read names, checked against a storefront key's token."""
        if nector.lead_token_secret is not None:
            token = request.headers.get("x-leadtoken")
            problem = check_lead_token(token, lead_id, nector.lead_token_secret)
            if problem:
                return error(401, problem)
        lead = nector.find_lead(lead_id=lead_id) if lead_id else None
        return lead if lead is not None else error(404, "Lead does not exists")

    async def leads(request: Request) -> Response:
        query = _checked_query(request, {"customer_id", "referral_code", "email", "mobile"})
        if isinstance(query, Response):
            return query
        if "customer_id" in query:
            if nector.lead_token_secret is not None:
                return error(401, "a storefront key looks a customer up with x-leaddigest")
            found = nector.find_lead(customer_id=query["customer_id"])
            if found is None:
                return error(404, "Lead does not exists")
            return _ok({"item": found.item()})
        lead = lead_of(request, request.path_params["id"])
        return lead if isinstance(lead, Response) else _ok({"item": lead.item()})

    def customer_list(
        pick: Callable[[Lead], list[dict[str, Any]]], filters: frozenset[str] = frozenset()
    ) -> Handler:
        async def listing(request: Request) -> Response:
            query = _checked_query(request, {"lead_id", *_PAGING, *filters})
            if isinstance(query, Response):
                return query
            if "lead_id" not in query:
                return error(400, "lead_id is required")
            lead = lead_of(request, query["lead_id"])
            if isinstance(lead, Response):
                return lead
            items = [
                x for x in pick(lead) if all(x.get(f) == query[f] for f in filters & set(query))
            ]
            return _ok(_page(items, query))

        return listing

    async def coupon(request: Request) -> Response:
        if nector.lead_token_secret is not None and not request.headers.get("x-leadtoken"):
            return error(401, "x-leadtoken is required for a storefront key")
        for lead in nector.leads.values():
            for item in lead.coupons:
                if item["_id"] == request.path_params["id"]:
                    return _ok({"item": item})
        return error(404, "Coupon does not exists")

    async def triggers(request: Request) -> Response:
        query = _checked_query(request, {"lead_id", "content_types", *_PAGING})
        if isinstance(query, Response):
            return query
        wanted = set(request.query_params.getlist("content_types")) or {"earn"}
        # What the widget's ways to earn render: the content, and its link (a click executes).
        link = {"execute_after": "link_click", "redirect_link": SHOP_LINK, "fa_icon": "fa-gift"}
        items = [
            {"_id": t.id, "content_type": "earn", "created_at": 0}
            | {"content": {"name": t.name, "description": _earn(t), **link}}
            for t in nector.triggers.values()
            if "earn" in wanted
        ]
        data = _page(items, query)
        if "lead_id" in query:
            lead = lead_of(request, query["lead_id"])
            if isinstance(lead, Response):
                return lead
            # Per trigger, how often the customer did it: the widget ticks those done.
            counts = Counter(a["trigger_id"] for a in lead.activities)
            data["activities"] = [{"parent_id": t, "count": n} for t, n in counts.items()]
        return _ok(data)

    async def details(request: Request) -> Response:
        query = _checked_query(request, set())
        if isinstance(query, Response):
            return query
        entity = {"_id": ENTITY_ID, "name": "Demo store", "currency": "coins"}
        return _ok(
            {
                "systeminfos": {"coin_name": "coins"},
                "websdkinfos": {"items": [WEBSDK_CONFIG]},
                "businessinfos": {"entity": entity},
            }
        )

    async def offers(request: Request) -> Response:
        query = _checked_query(request, {"tier", "time_segment"})
        if isinstance(query, Response):
            return query
        items = list(nector.offers.values())
        kinds = ("businessoffers", "recommendedoffers", "internaloffers", "topoffers")
        return _ok({kind: {"items": items if kind == "businessoffers" else []} for kind in kinds})

    async def offer(request: Request) -> Response:
        item = nector.offers.get(request.path_params["id"])
        return _ok({"item": item}) if item else error(404, "Offer does not exists")

    async def entity(request: Request) -> Response:
        if request.path_params["id"] != ENTITY_ID:
            return error(404, "Entity does not exists")
        return _ok({"item": {"_id": ENTITY_ID, "name": "Demo store"}})

    return [
        route("leads/{id}", leads),
        route("wallettransactions", customer_list(lambda lead: lead.transactions)),
        route("coupons", customer_list(lambda lead: lead.coupons)),
        route("coupons/{id}", coupon),
        route("activities", customer_list(lambda lead: lead.activities, frozenset(["event"]))),
        route("triggers", triggers),
        route("aggreegateddetails", details),
        route("aggreegatedoffers", offers),
        route("offers/{id}", offer),
        route("entities/{id}", entity),
    ]

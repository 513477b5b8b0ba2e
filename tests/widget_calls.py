"""The calls Nector's own widget (joinnector-merchant-websdk) makes on a signed-in page view
and its two customer actions, in its order and with its parameters, listed once for the tests
and for docs/nector-widget.md.

``{lead}`` is the lead's ``_id`` from the widget's own lead read, ``{customer}`` the customer id
in its page URL, ``{offer}`` and ``{entity}`` ids from earlier answers, ``{coupon}`` the coupon a
redemption issued. ``signed_out``: the widget makes the call with no customer in its URL too.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class WidgetCall(NamedTuple):
    name: str
    method: str
    path: str  # under /api/v2/merchant/, with its query as the widget writes it
    body: dict[str, Any] | None = None
    signed_out: bool = False


_PAGING = "page=1&limit=10&sort=created_at&sort_op=DESC"

CALLS: tuple[WidgetCall, ...] = (
    WidgetCall("details", "GET", "aggreegateddetails", signed_out=True),
    # The path id is a fresh uuid when the URL names a customer_id (Nector looks up by it).
    WidgetCall("lead", "GET", "leads/{lead_or_uuid}?{customer_query}"),
    WidgetCall("offers", "GET", "aggreegatedoffers?tier=&time_segment=evening", signed_out=True),
    WidgetCall(
        "ways to earn",
        "GET",
        f"triggers?{_PAGING}&content_types=earn&content_types=social",
        signed_out=True,
    ),
    WidgetCall(
        "ways to earn, done", "GET", f"triggers?{_PAGING}&content_types=earn&lead_id={{lead}}"
    ),
    WidgetCall("referral", "GET", f"triggers?{_PAGING}&content_types=referral", signed_out=True),
    WidgetCall(
        "coupons", "GET", "coupons?lead_id={lead}&page=1&limit=5&sort=created_at&sort_op=DESC"
    ),
    WidgetCall(
        "history",
        "GET",
        "wallettransactions?lead_id={lead}&page=1&limit=5&sort=created_at&sort_op=DESC",
    ),
    WidgetCall("referrals", "GET", f"activities?lead_id={{lead}}&{_PAGING}&event=referral_create"),
    WidgetCall("offer", "GET", "offers/{offer}", signed_out=True),
    WidgetCall("entity", "GET", "entities/{entity}", signed_out=True),
    WidgetCall("reward", "POST", "activities", {"trigger_id": "{trigger}", "lead_id": "{lead}"}),
    WidgetCall(
        "redeem", "POST", "offerredeems", {"offer_id": "{offer}", "lead_id": "{lead}", "step": 1}
    ),
    WidgetCall("coupon", "GET", "coupons/{coupon}"),
)

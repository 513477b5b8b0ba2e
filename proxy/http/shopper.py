"""What a shopper is told of a refusal on Nector's paths.

Nector's own widget shows ``data.message`` of every refusal to the customer, so there it is a
short sentence in plain words ("Please sign in again."), while ``error.message`` keeps the
developer's detail. A refusal that says when to come back (Retry-After) says it in words too.
A code with no entry here (a new one) gets the general sentence, never the developer's text.
"""

from __future__ import annotations

import json
import math

from proxy.errors import ProxyError

GENERAL = "Something went wrong. Please refresh the page and try again."
UNAVAILABLE = "Rewards are unavailable right now. Please try again later."
SIGN_IN_AGAIN = "Please sign in again."

SHOPPER: dict[str, str] = {
    "missing_session": "Please sign in to continue.",
    "invalid_session": SIGN_IN_AGAIN,
    "expired_session": SIGN_IN_AGAIN,
    "identity_mismatch": "This account does not match. " + SIGN_IN_AGAIN,
    "lead_session_required": "Rewards are not available for this account yet.",
    "trigger_not_allowed": "This reward is not available.",
    "source_not_allowed": "This reward is not available here.",
    "origin_not_allowed": "Rewards are not available on this page.",
    "read_not_allowed": "This is not available.",
    "shop_not_allowed": "Rewards are not available in this shop.",
    "not_found": "We could not find that.",
    "offer_not_allowed": "This offer cannot be redeemed here.",
    "redemption_off": "Redeeming coins is not available here yet.",
    "trigger_not_active": "This reward is not open right now.",
    "challenge_failed": "Please complete the check and try again.",
    "coin_budget_spent": "This reward has run out for now. Try again in {wait}.",
    "challenge_unavailable": "Rewards are busy right now. Try again in {wait}.",
    "rate_limited": "Too many tries. Try again in {wait}.",
    "idempotency_in_flight": "Your reward is on its way. Try again in {wait}.",
    "upstream_busy": "Rewards are busy right now. Try again in {wait}.",
    "server_busy": "Rewards are busy right now. Try again in {wait}.",
    "upstream_error": UNAVAILABLE,
    "upstream_rejected": UNAVAILABLE,
    "upstream_timeout": UNAVAILABLE,
    "storage_unavailable": UNAVAILABLE,
}
# A reward (or redemption) already taken: its customer's limit, not everyone's.
CLAIMED_TODAY = "You have already claimed this today. Try again in {wait}."
CLAIMED = "You have already claimed this. Try again in {wait}."


def wait_words(seconds: int) -> str:
    """``seconds`` as a shopper reads it: "3 hours", "20 minutes", "a moment"."""
    if seconds >= 3600:
        hours = math.ceil(seconds / 3600)
        return f"{hours} hour" + ("s" if hours > 1 else "")
    if seconds >= 60:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minute" + ("s" if minutes > 1 else "")
    return "a moment"


def shopper_message(error: ProxyError, *, claim: bool = False) -> str:
    """The sentence for ``error``; ``claim``: it answers a reward or a redemption."""
    retry = getattr(error, "retry_after", None)
    text = SHOPPER.get(error.code, GENERAL)
    # Only the customer's own window is a claim already taken; an address's limit (failed
    # session checks, say) falls on people who never claimed, so it keeps the neutral words.
    if claim and error.code == "rate_limited" and not getattr(error, "per_address", False):
        text = CLAIMED_TODAY if retry is not None and retry >= 3600 else CLAIMED
    if "{wait}" in text:
        text = text.format(wait=wait_words(retry if isinstance(retry, int) else 60))
    return text


def nector_body(error: ProxyError, request_id: str, *, claim: bool = False) -> bytes:
    """The refusal in Nector's envelope (``meta``, ``data.message`` for the shopper) beside the
    contract's error object (``error.message`` for the developer)."""
    envelope = {
        "meta": {"status": "error", "code": error.status},
        "data": {"message": shopper_message(error, claim=claim)},
        "error": {"code": error.code, "message": error.message, "request_id": request_id}
        | (error.details or {}),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()

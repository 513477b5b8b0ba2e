"""The allow-list and the body rules: plain functions over plain data.

Nothing the client sends decides who is rewarded or with what: the customer comes from the
verified session, the trigger from the allow-list, any reward override from the config.
The client may name the trigger (URL or ``trigger_id``) and, on the drop-in route, repeat the
session's own customer; every other field is refused rather than silently dropped, so a
tampering client learns that it was seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from proxy.config.settings import Rate, TriggerSettings
from proxy.errors import (
    ForbiddenField,
    IdentityMismatch,
    InvalidBody,
    TriggerNotAllowed,
)
from proxy.http.responses import rate_policy
from proxy.identity.claims import Session
from proxy.rewards.campaign import Campaign, build_campaign


def _compact_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"))``, byte for byte, built once: json.dumps
    builds a new C encoder on every call, which costs as much as the encoding itself. The
    bytes must not change between releases (an Idempotency-Key's fingerprint is taken over
    them), so this is the stdlib's encoder and not a faster library's."""
    if c_make_encoder is None:  # no _json accelerator: the pure-Python encoder
        return json.JSONEncoder(separators=(",", ":")).encode
    # No circular-reference check: the bodies are built here from config and session data.
    encode = c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_compact_json = _compact_encoder()


@dataclass(frozen=True, slots=True)
class Trigger:
    """An allow-listed trigger with everything derivable from config computed once."""

    id: str
    label: str  # the alias when there is one: safe for logs and metric labels
    sources: frozenset[str]
    rates: tuple[Rate, ...]
    trace: Mapping[str, Any] | None
    policy: bytes  # the RateLimit-Policy field of its rates
    # The upstream body around the customer, for a session with no claim but its subject:
    # '{"trigger_id":"<id>",' and ',"trace":{...}}' (or '}'), encoded once (upstream_body).
    body_head: str
    body_tail: str
    public: bytes  # what a widget may show of it (GET /v1/triggers/{trigger}): no secret
    campaign: Campaign | None = None  # schedule, coin budgets, dry run, human check


def _trace(t: TriggerSettings) -> dict[str, Any] | None:
    trace: dict[str, Any] = {}
    if t.wallet is not None:
        wallet: dict[str, Any] = {"title": t.wallet.title}
        if t.wallet.description is not None:
            wallet["description"] = t.wallet.description
        wallet["operation"] = t.wallet.operation
        wallet["coin_range"] = {"min": t.wallet.coin_min, "max": t.wallet.coin_max}
        trace["via_api_for_wallet"] = wallet
    if t.offer is not None:
        trace["via_api_for_offer"] = {"offer_id": t.offer.offer_id}
    return trace or None


def _public(
    t: TriggerSettings, rates: tuple[Rate, ...], trace: dict[str, Any] | None
) -> dict[str, Any]:
    """The trigger as a widget may show it: the reward it is configured to give (so a wheel's
    segments are the real range) and its limits; config only, never a secret."""
    reward: dict[str, Any] = {}
    if trace is not None:
        if "via_api_for_wallet" in trace:
            reward["wallet"] = trace["via_api_for_wallet"]
        if "via_api_for_offer" in trace:
            reward["offer"] = trace["via_api_for_offer"]
    shown: dict[str, Any] = {"id": t.id, "name": t.name, "sources": sorted(t.sources)}
    shown["reward"] = reward
    shown["limits"] = [{"limit": r.limit, "seconds": r.seconds} for r in rates]
    return shown


class TriggerPolicy:
    """Looks up allow-listed triggers by id (any case) or alias."""

    def __init__(
        self,
        triggers: Sequence[TriggerSettings],
        default_rates: tuple[Rate, ...],
        *,
        site_key: str = "",
    ):
        self._by_id: dict[str, Trigger] = {}
        self._by_ref: dict[str, Trigger] = {}
        for t in triggers:
            rates = t.per_customer or default_rates
            trace = _trace(t)
            shown = _public(t, rates, trace)
            campaign = build_campaign(t, site_key)
            fixed = shown if campaign is None else shown | campaign.public
            trigger = Trigger(
                id=t.id,
                label=t.name or t.id,
                sources=t.sources,
                rates=rates,
                trace=trace,
                policy=rate_policy(rates),
                body_head=_compact_json({"trigger_id": t.id})[:-1] + ",",
                body_tail="}" if trace is None else "," + _compact_json({"trace": trace})[1:],
                # A schedule's state is added at each request (Campaign.view).
                public=_compact_json({"trigger": fixed}).encode(),
                campaign=campaign,
            )
            self._by_id[t.id] = trigger
            self._by_ref[t.id] = trigger
            if t.name:
                self._by_ref[t.name] = trigger

    def by_ref(self, ref: str) -> Trigger:
        """The trigger named by ``ref`` in a URL: its id or its alias."""
        trigger = self._by_ref.get(ref) or self._by_id.get(ref.lower())
        if trigger is None:
            raise TriggerNotAllowed()
        return trigger

    def by_id(self, trigger_id: object) -> Trigger:
        """The trigger named by a body's ``trigger_id`` (ids only, as Nector takes them)."""
        if not isinstance(trigger_id, str):
            raise InvalidBody("trigger_id must be a string")
        trigger = self._by_id.get(trigger_id.lower())
        if trigger is None:
            raise TriggerNotAllowed()
        return trigger


def check_trigger_body(body: Mapping[str, Any]) -> None:
    """``POST /v1/triggers/{trigger}`` takes an empty body or ``{}``: everything else is set
    by the session and the config."""
    for name in body:
        raise ForbiddenField(f"the client may not set {_field_name(name)}")


def check_dropin_body(
    body: Mapping[str, Any], session: Session, resolved_lead: str | None = None
) -> None:
    """The drop-in route takes Nector's shape: ``trigger_id`` and optionally the session's own
    ``customer_id`` or ``lead_id``; another customer is an identity mismatch. A customer_id
    session may also name ``resolved_lead``, the lead the proxy resolved for that customer
    (Nector's widget sends the lead's ``_id`` from its own lead read)."""
    for name, value in body.items():
        if name == "trigger_id":
            continue
        if name in ("customer_id", "lead_id"):
            own = name == session.subject_field and value == session.subject
            resolved = name == "lead_id" and resolved_lead is not None and value == resolved_lead
            if not (own or resolved):
                raise IdentityMismatch()
            continue
        raise ForbiddenField(f"the client may not set {_field_name(name)}")


def _field_name(name: str) -> str:
    # The name is echoed to the client: keep it short and printable.
    shown = (
        name
        if name.isprintable() and len(name) <= 40
        else name[:40].encode("unicode_escape").decode()
    )
    return json.dumps(shown)


def upstream_body(trigger: Trigger, session: Session) -> bytes:
    """The JSON body sent to Nector, built only from the trigger and the session."""
    if session.name is None and session.referral_code is None and session.metadetail is None:
        # The usual session, the same bytes as below: the trigger's parts were encoded once.
        subject = encode_basestring_ascii(session.subject)
        return f'{trigger.body_head}"{session.subject_field}":{subject}{trigger.body_tail}'.encode()
    body: dict[str, Any] = {"trigger_id": trigger.id, session.subject_field: session.subject}
    if session.name is not None:
        body["name"] = session.name
    if session.referral_code is not None:
        body["referral_code"] = session.referral_code
    if session.metadetail is not None:
        body["metadetail"] = dict(session.metadetail)
    if trigger.trace is not None:
        body["trace"] = trigger.trace
    return _compact_json(body).encode()


def trigger_listing(
    triggers: Sequence[TriggerSettings], default_rates: tuple[Rate, ...], *, site_key: str = ""
) -> bytes:
    """``GET /v1/triggers``: every allow-listed trigger as ``GET /v1/triggers/{trigger}`` shows
    it, in the config's order, but for a schedule's state now (that route has it); config only,
    never a secret. Takes what ``TriggerPolicy`` takes."""
    policy = TriggerPolicy(triggers, default_rates, site_key=site_key)
    shown = [json.loads(policy.by_id(t.id).public)["trigger"] for t in triggers]
    return _compact_json({"triggers": shown}).encode()

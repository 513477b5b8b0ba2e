"""Redemption: a customer spending its own coins on an offer, as Nector's widget does it
(``POST /api/v2/merchant/offerredeems`` ``{offer_id, lead_id, step}``), off by default.

The order of checks is a reward's: (route and method, in the app) body size, media type,
session, the offer (redemption on, the offer allow-listed: ``[redemption]``), source, body
fields, idempotency, the customer's redemptions, the workspace budget, the upstream call. The
lead is always the session's own: a lead_id session's, or the one the proxy resolved for a
customer_id session (``identity.resolved``); a body naming another is identity_mismatch. What
reaches Nector is built from checked values only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.config.redemption import MAX_STEP, RedemptionSettings
from proxy.config.settings import SOURCES, Rate
from proxy.errors import (
    ForbiddenField,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    IdentityMismatch,
    InvalidBody,
    NotFound,
    OfferNotAllowed,
    RateLimited,
    RedemptionOff,
    UpstreamBusy,
    UpstreamError,
    UpstreamFailure,
    UpstreamUnreachable,
)
from proxy.http.asgi import Request
from proxy.http.body import parse_object
from proxy.http.responses import NECTOR_PREFIX, Answer, quota_headers, rate_policy, render_error
from proxy.identity.auth import Authenticator
from proxy.identity.claims import resolve_source
from proxy.identity.leadtokens import LeadTokens
from proxy.identity.resolved import ResolvedLeads
from proxy.limits.decisions import LimitStore, Outcome, StoredAnswer
from proxy.limits.keys import budget_window, customer_windows, idempotency_claim
from proxy.observe.logs import AccessRecord, RequestLog
from proxy.upstream.client import UpstreamClient

REDEEM_PATH = NECTOR_PREFIX + "offerredeems"
_TARGET = "offerredeems"  # also the "trigger" its windows and Idempotency-Keys are keyed by
_FIELDS = frozenset(["offer_id", "lead_id", "customer_id", "step"])
_REPLAYED = (b"idempotent-replayed", b"true")


class Redemptions:
    def __init__(
        self,
        settings: RedemptionSettings,
        *,
        auth: Authenticator,
        budget: Rate,
        idempotency_ttl_seconds: int,
        in_flight_seconds: float,
        max_body_bytes: int,
        store: LimitStore,
        upstream: UpstreamClient,
        lead_tokens: LeadTokens | None,
        resolved: ResolvedLeads,
        log: RequestLog,
        rewarded: Callable[[str], Awaitable[None]] | None = None,  # with the customer's scope
    ) -> None:
        self._rewarded = rewarded
        self._settings = settings
        self._auth = auth
        self._budgets = (budget_window(budget),)
        self._rates = settings.per_customer
        self._policy = rate_policy(settings.per_customer)
        self._ttl = idempotency_ttl_seconds
        self._in_flight = in_flight_seconds
        self._max_body = max_body_bytes
        self._store = store
        self._upstream = upstream
        self._lead_tokens = lead_tokens
        self._resolved = resolved
        self._log = log

    async def redeem(self, request: Request, record: AccessRecord, cookie_ok: bool) -> Answer:
        """``POST /api/v2/merchant/offerredeems``: the session's own lead spends its coins."""
        raw = await request.json_body(self._max_body)
        session, _ = self._auth.session(request, record, cookie_ok)
        if not self._settings.enabled:
            raise RedemptionOff()
        body = parse_object(raw)
        offer_id = body.get("offer_id")
        if not isinstance(offer_id, str):
            raise InvalidBody("offer_id is required, a string")
        if not self._settings.allows(offer_id.lower()):
            raise OfferNotAllowed()
        record.trigger = _TARGET
        source = resolve_source(request.header(b"x-source"), session, frozenset(SOURCES))
        record.source = source
        step = _checked(body, session.subject_field, session.subject)
        lead = await self._resolved.lead_of(session, source, request.request_id, record)
        if lead is None:
            raise NotFound("Nector has no lead for this customer yet")
        if body.get("lead_id", lead) != lead:
            self._log.audit("identity_mismatch", record, request.client_ip)
            raise IdentityMismatch()
        upstream = json.dumps(
            {"offer_id": offer_id.lower(), "lead_id": lead, "step": step}, separators=(",", ":")
        ).encode()
        return await self._spend(request, session.scope, source, upstream, lead, record)

    async def _spend(
        self,
        request: Request,
        scope: str,
        source: str,
        body: bytes,
        lead: str,
        record: AccessRecord,
    ) -> Answer:
        """The store's decision (Idempotency-Key, the customer's windows, the budget), then
        the call; every answer after the call began is kept for the key."""
        raw_key = request.headers.get(b"idempotency-key")
        claim = None
        if raw_key is not None:
            claim = idempotency_claim(
                scope,
                raw_key.decode("latin-1"),
                trigger_id=_TARGET,
                source=source,
                body=body,
                in_flight_seconds=self._in_flight,
                ttl_seconds=self._ttl,
            )
        windows = customer_windows(_TARGET, scope, self._rates)
        decision = await self._store.admit(windows, self._budgets, claim)
        outcome = record.decision = decision.outcome
        if outcome is Outcome.REPLAY:
            assert decision.answer is not None
            record.replayed = True
            return Answer(decision.answer.status, decision.answer.body, [_REPLAYED])
        if outcome is Outcome.RATE_LIMITED:
            headers = quota_headers(windows, decision.windows, self._policy)
            raise RateLimited(decision.retry_after, headers=headers)
        if outcome is Outcome.BUDGET_SPENT:
            raise UpstreamBusy(decision.retry_after)
        if outcome is Outcome.IN_FLIGHT:
            raise IdempotencyInFlight(decision.retry_after)
        if outcome is Outcome.KEY_REUSED:
            raise IdempotencyKeyReused()
        if outcome is Outcome.LOST:
            raise UpstreamError("the first request with this Idempotency-Key did not finish")
        tokens = self._lead_tokens
        token = None if tokens is None else tokens.for_lead(lead)
        try:
            sent = await self._upstream.post(
                _TARGET, body, source=source, request_id=request.request_id, lead_token=token
            )
            answer = Answer(sent.status, sent.body)
            record.upstream_status = sent.status
        except UpstreamUnreachable:
            await self._store.release(windows, self._budgets, claim, decision.ticket)
            raise
        except UpstreamFailure as exc:  # the outcome is unknown: kept, never sent again
            record.code = record.upstream_fault = exc.code
            rendered = render_error(exc, REDEEM_PATH, request.request_id)
            answer = Answer(exc.status, rendered, list(exc.headers))
        if self._rewarded is not None:  # the balance may have moved: so may their reads
            await self._rewarded(scope)
        if claim is not None:
            await self._store.finish(claim, StoredAnswer(answer.status, answer.body))
        answer.headers += quota_headers(windows, decision.windows, self._policy)
        return answer


def _checked(body: dict[str, Any], subject_field: str, subject: str) -> int:
    """The body's ``step``; only Nector's widget's fields, and no other customer."""
    for name in body:
        if name not in _FIELDS:
            raise ForbiddenField("the client may not set that field")
    if "customer_id" in body and (subject_field, body["customer_id"]) != ("customer_id", subject):
        raise IdentityMismatch()
    step = body.get("step", 1)
    if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= MAX_STEP:
        raise InvalidBody(f"step must be a whole number from 1 to {MAX_STEP}")
    return step

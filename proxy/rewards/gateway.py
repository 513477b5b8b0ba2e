"""The reward path: from a request to Nector's answer, one check at a time.

The order is the contract's, so every request gets one well-defined answer and nothing that
fails a check reaches a later one: (route and method, in the app) body size, media type,
session, trigger, source, body fields, the campaign's schedule and human check (campaign.py),
idempotency, the customer's limits, the coin budgets, the workspace budget, the upstream call
(or a dry run's answer). Idempotency to the budget are one atomic store decision.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from proxy.config.settings import Rate
from proxy.errors import (
    CoinBudgetSpent,
    ForbiddenField,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    IdentityMismatch,
    InvalidBody,
    ProxyError,
    RateLimited,
    StorageUnavailable,
    UpstreamBusy,
    UpstreamError,
    UpstreamUnreachable,
)
from proxy.http.asgi import Request
from proxy.http.body import parse_object
from proxy.http.responses import NECTOR_PREFIX, Answer, quota_headers, render_error
from proxy.identity.auth import Authenticator
from proxy.identity.claims import Session, resolve_source
from proxy.identity.leadtokens import LeadTokens
from proxy.identity.resolved import ResolvedLeads
from proxy.limits.coins import CoinWindow
from proxy.limits.decisions import (
    Decision,
    LimitStore,
    Outcome,
    StoredAnswer,
)
from proxy.limits.keys import (
    IdempotencyClaim,
    Window,
    budget_window,
    customer_windows,
    idempotency_claim,
)
from proxy.observe.logs import LOG, AccessRecord, RequestLog
from proxy.rewards.campaign import paid_coins
from proxy.rewards.controls import DRY_RUN, CampaignControls
from proxy.rewards.dropin import check_dropin
from proxy.rewards.memo import REPLAYED, DecisionMemo
from proxy.rewards.policy import Trigger, TriggerPolicy, check_trigger_body, upstream_body
from proxy.upstream.client import UpstreamClient

# An unfinished first call is taken as lost this long after the upstream deadline.
IN_FLIGHT_MARGIN_SECONDS = 5.0
_REPEATABLE = (Outcome.RATE_LIMITED, Outcome.REPLAY)
_SHOWN_FOR = [(b"cache-control", b"public, max-age=300"), (b"vary", b"Origin")]


class Gateway:
    """Wires the core (sessions, policy) to the edges (limit store, upstream client)."""

    def __init__(
        self,
        *,
        auth: Authenticator,
        policy: TriggerPolicy,
        budget: Rate,
        idempotency_ttl_seconds: int,
        max_body_bytes: int,
        store: LimitStore,
        upstream: UpstreamClient,
        lead_tokens: LeadTokens | None,
        log: RequestLog,
        controls: CampaignControls | None = None,
        resolved: ResolvedLeads | None = None,
        rewarded: Callable[[str], Awaitable[None]] | None = None,  # with the customer's scope
    ) -> None:
        self.auth = auth
        self._rewarded = rewarded
        self._policy = policy
        self._budgets = (budget_window(budget),)
        self._ttl = idempotency_ttl_seconds
        self._max_body = max_body_bytes
        self._store = store
        self._upstream = upstream
        self._lead_tokens = lead_tokens
        self._log = log
        self._resolved = resolved or ResolvedLeads(store.clock)  # shared with the reads
        self._repeats = DecisionMemo(store.clock)
        self._in_flight = upstream.timeout_seconds + IN_FLIGHT_MARGIN_SECONDS
        self.controls = controls or CampaignControls(store, clock=time.time)

    async def aclose(self) -> None:
        await self.controls.aclose()

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the limit store answers."""
        await self._store.ping()

    # --- routes -------------------------------------------------------------------------

    async def trigger(
        self, request: Request, ref: str, record: AccessRecord, cookie_ok: bool
    ) -> Answer:
        """``POST /v1/triggers/{ref}``: the body may be empty or ``{}``."""
        # A body whose size the headers tell is read after the session (declared_json_length).
        declared = request.declared_json_length(self._max_body)
        raw = await request.json_body(self._max_body) if declared is None else b""
        session, token = self.auth.session(request, record, cookie_ok)
        if declared is not None:
            raw = await request.read_declared(self._max_body, declared)
        headers = request.headers
        repeat_key = None
        if not raw or raw == b"{}":  # the usual bodies need no parsing
            # Everything else the answer depends on: a repeat of a refused or replayed request
            # is answered as before (DecisionMemo).
            repeat_key = (token, ref, headers.get(b"x-source"), headers.get(b"idempotency-key"))
            repeat = self._repeats.get(repeat_key)
            if repeat is not None:
                return self._repeats.answer(repeat, record)
        trigger = self._policy.by_ref(ref)
        record.trigger = trigger.label
        source = resolve_source(request.header(b"x-source"), session, trigger.sources)
        record.source = source
        if repeat_key is None:
            try:
                check_trigger_body(parse_object(raw))
            except ForbiddenField:
                self._log.audit("forbidden_field", record, request.client_ip)
                raise
        return await self._reward(request, trigger, session, source, record, repeat_key=repeat_key)

    def describe(self, ref: str, record: AccessRecord) -> Answer:
        """``GET /v1/triggers/{ref}``: what a widget may show of it; no session needed."""
        trigger = self._policy.by_ref(ref)
        record.trigger = trigger.label
        campaign = trigger.campaign
        if campaign is None or campaign.schedule is None:
            return Answer(200, trigger.public, [*_SHOWN_FOR])
        return self.controls.view(campaign, trigger.public)

    async def dropin(self, request: Request, record: AccessRecord, cookie_ok: bool) -> Answer:
        """``POST /api/v2/merchant/activities``: Nector's own body shape."""
        # A body whose size the headers tell is read after the session (declared_json_length).
        declared = request.declared_json_length(self._max_body)
        raw = await request.json_body(self._max_body) if declared is None else b""
        session, _ = self.auth.session(request, record, cookie_ok)
        if declared is not None:
            raw = await request.read_declared(self._max_body, declared)
        body = parse_object(raw)  # the trigger is named in the body
        if "trigger_id" not in body:
            raise InvalidBody("trigger_id is required")
        trigger = self._policy.by_id(body["trigger_id"])
        record.trigger = trigger.label
        source = resolve_source(request.header(b"x-source"), session, trigger.sources)
        record.source = source
        try:
            await check_dropin(body, session, self._resolved, source, request.request_id, record)
        except (ForbiddenField, IdentityMismatch) as exc:
            self._log.audit(exc.code, record, request.client_ip)
            raise
        return await self._reward(request, trigger, session, source, record, nector=True)

    # --- steps --------------------------------------------------------------------------

    async def _reward(
        self,
        request: Request,
        trigger: Trigger,
        session: Session,
        source: str,
        record: AccessRecord,
        *,
        repeat_key: object = None,
        nector: bool = False,
    ) -> Answer:
        """The store's decision, then the upstream call. ``nector``: failures in its envelope."""
        # Built only when needed: for an Idempotency-Key's fingerprint, or once admitted.
        body = None
        raw_key = request.headers.get(b"idempotency-key")
        claim = None
        if raw_key is not None:
            body = upstream_body(trigger, session)
            claim = idempotency_claim(
                session.scope,
                raw_key.decode("latin-1"),
                trigger_id=trigger.id,
                source=source,
                body=body,
                in_flight_seconds=self._in_flight,
                ttl_seconds=self._ttl,
            )
        windows = customer_windows(trigger.id, session.scope, trigger.rates)
        campaign, decision = trigger.campaign, None
        coins: tuple[CoinWindow, ...] = ()
        if campaign is not None:
            decision = await self.controls.screen(request, campaign, claim)
            coins = self.controls.coins(trigger.id, campaign, session.scope)
        if decision is None:
            store, budgets = self._store, self._budgets  # no coins: the store's usual call
            admit = store.admit(windows, budgets, claim, coins) if coins else None
            decision = await (store.admit(windows, budgets, claim) if admit is None else admit)
        outcome = decision.outcome
        record.decision = outcome
        if repeat_key is not None and outcome in _REPEATABLE:
            self._repeats.remember(
                repeat_key, decision, trigger.label, source, windows, trigger.policy
            )
        if outcome is Outcome.REPLAY:
            assert decision.answer is not None
            record.replayed = True
            return Answer(decision.answer.status, decision.answer.body, [REPLAYED])
        if outcome is Outcome.RATE_LIMITED:
            raise RateLimited(
                decision.retry_after,
                headers=quota_headers(windows, decision.windows, trigger.policy),
            )
        if outcome is Outcome.BUDGET_SPENT:
            raise UpstreamBusy(decision.retry_after)
        if outcome is Outcome.COINS_SPENT:
            raise CoinBudgetSpent(decision.retry_after)
        if outcome is Outcome.IN_FLIGHT:
            raise IdempotencyInFlight(decision.retry_after)
        if outcome is Outcome.KEY_REUSED:
            raise IdempotencyKeyReused()
        if outcome is Outcome.LOST:
            raise UpstreamError("the first request with this Idempotency-Key did not finish")
        headers = quota_headers(windows, decision.windows, trigger.policy)
        if body is None:
            body = upstream_body(trigger, session)
        tokens = self._lead_tokens
        lead_token = None if tokens is None else tokens.for_lead(session.subject)
        if campaign is not None and campaign.dry_run:
            dry, paid = campaign.dry_run_answer(trigger.id, self.controls.draw)
            answer, record.decision = Answer(200, dry), DRY_RUN
        else:
            try:
                answer = await self._forward(
                    body, source, lead_token, request.request_id, record, nector
                )
            except UpstreamUnreachable:
                await self._give_back(windows, claim, decision, coins)
                raise
            paid = paid_coins(answer.status, answer.body, coins[0].coins) if coins else 0
            if self._rewarded is not None:  # the balance may have moved: so may their reads
                await self._rewarded(session.scope)
        if coins:
            await self.controls.settle(coins, decision, paid)
        if claim is not None:
            # Stored whatever it is, 502 and 504 included: the call began, never to be resent.
            await self._store.finish(claim, StoredAnswer(answer.status, answer.body))
        answer.headers += headers
        return answer

    async def _give_back(
        self,
        windows: tuple[Window, ...],
        claim: IdempotencyClaim | None,
        decision: Decision,
        coins: tuple[CoinWindow, ...],
    ) -> None:
        """The call never left the machine: it spent nothing and its key is free again."""
        try:
            extra = (coins,) if coins else ()
            await self._store.release(windows, self._budgets, claim, decision.ticket, *extra)
        except StorageUnavailable:
            # The reservation then ends as "lost" after its in-flight time: never paid twice.
            LOG.warning("the limit store is unavailable: a failed call's quota stays spent")

    async def _forward(
        self,
        body: bytes,
        source: str,
        lead_token: bytes | None,
        request_id: str,
        record: AccessRecord,
        nector: bool,
    ) -> Answer:
        """The upstream's answer, or its failure's (to be stored); raises UpstreamUnreachable."""
        try:
            upstream = await self._upstream.send(
                body, source=source, request_id=request_id, lead_token=lead_token
            )
        except UpstreamUnreachable as exc:
            record.code = record.upstream_fault = exc.code
            record.cause = exc.cause
            raise
        except ProxyError as exc:
            failure = exc
        except Exception:  # a bug must still leave a stored, well-formed answer
            LOG.exception("unexpected error while calling the upstream")
            failure = UpstreamError()
        else:
            record.upstream_status = upstream.status
            record.upstream_ms = round(upstream.elapsed * 1000, 2)
            return Answer(upstream.status, upstream.body)
        record.code = record.upstream_fault = failure.code
        record.cause = failure.cause
        rendered = render_error(failure, NECTOR_PREFIX + "activities" if nector else "", request_id)
        return Answer(failure.status, rendered, failure.headers)

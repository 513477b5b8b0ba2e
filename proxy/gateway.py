"""The reward path: from a request to Nector's answer, one check at a time.

The order is the contract's, so every request gets one well-defined answer and nothing that
fails a check reaches a later one: (route and method, in the app) body size, media type,
session, trigger, source, body fields, idempotency, the customer's limits, the workspace
budget, the upstream call. The last four are one atomic store decision.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass, field

from .asgi import Request
from .errors import (
    ExpiredSession,
    ForbiddenField,
    Headers,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    IdentityMismatch,
    InvalidBody,
    InvalidMintKey,
    InvalidSession,
    LeadSessionRequired,
    MissingSession,
    NotFound,
    OriginNotAllowed,
    ProxyError,
    RateLimited,
    StorageUnavailable,
    UnsupportedMediaType,
    UpstreamBusy,
    UpstreamError,
    UpstreamUnreachable,
)
from .leadtokens import LeadTokens
from .logs import LOG, AccessRecord, AuditThrottle, customer_hasher, log_audit
from .policy import (
    Trigger,
    TriggerPolicy,
    check_dropin_body,
    check_trigger_body,
    parse_object,
    resolve_source,
    upstream_body,
)
from .ratelimit import (
    REFUSAL_MARGIN_SECONDS,
    REPLAY_MEMO_SECONDS,
    Decision,
    DecisionMemo,
    FailureLimit,
    IdempotencyClaim,
    LimitStore,
    Outcome,
    OverQuota,
    Repeat,
    StoredAnswer,
    Window,
    budget_window,
    customer_windows,
    idempotency_claim,
    quota_headers,
)
from .sessions import ClaimError, Session, SessionVerifier, mint_token
from .settings import Settings
from .upstream import UpstreamClient

# An unfinished first call is taken as lost this long after the upstream deadline.
IN_FLIGHT_MARGIN_SECONDS = 5.0
_REPLAYED = (b"idempotent-replayed", b"true")
_REPEATABLE = (Outcome.RATE_LIMITED, Outcome.REPLAY)
_OVER_QUOTA = RateLimited(1)  # the status, code and body of a remembered refusal
_WANTS_BEARER = "no session: send 'Authorization: Bearer <session token>' or the session cookie"


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)  # beside x-request-id and content-type
    content_type: bytes = b"application/json"


class Gateway:
    """Wires the core (sessions, policy) to the edges (limit store, upstream client)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: LimitStore,
        upstream: UpstreamClient,
    ) -> None:
        secrets = [s.reveal() for s in settings.secrets.session_secrets]
        self._settings = settings
        self._store = store
        # Failed session checks are counted per client address in this process, even when
        # the limit store is Redis: the limit is coarse by design, and a flood of forged
        # tokens then costs the shared store nothing.
        self._failures = FailureLimit(settings.limits.per_ip_invalid_session)
        self._forgery_audits = AuditThrottle()
        self._upstream = upstream
        self._verifier = SessionVerifier(secrets, settings.sessions.max_age_seconds)
        self._secrets = secrets
        self._policy = TriggerPolicy(settings.triggers, settings.limits.per_customer)
        self._hash_customer = customer_hasher(secrets[-1])
        self._budget = budget_window(settings.limits.upstream)
        self._repeats = DecisionMemo(store.clock)
        self._max_body = settings.server.max_body_bytes
        self._cookie = settings.sessions.cookie_name
        self._in_flight = settings.upstream.timeout_seconds + IN_FLIGHT_MARGIN_SECONDS
        mint_key = settings.secrets.mint_key
        self._mint_key = mint_key.reveal().encode() if mint_key else None
        lead_secret = settings.secrets.lead_token_secret
        self._lead_tokens = (
            LeadTokens(lead_secret)
            if settings.upstream.key_purpose == "storefront" and lead_secret is not None
            else None
        )

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the limit store answers."""
        await self._store.ping()

    # --- routes -------------------------------------------------------------------------

    async def trigger(
        self, request: Request, ref: str, record: AccessRecord, origin_ok: bool
    ) -> Answer:
        """``POST /v1/triggers/{ref}``: the body may be empty or ``{}``."""
        # A body whose size the headers tell is read after the session (_declared_length).
        declared = self._declared_length(request)
        raw = await self._json_body(request) if declared is None else b""
        session, token = self._session(request, record, origin_ok)
        if declared is not None:
            raw = await self._declared_body(request, declared)
        headers = request.headers
        repeat_key = None
        if not raw or raw == b"{}":  # the usual bodies need no parsing
            # Everything else the answer depends on: a repeat of a refused or replayed request
            # is answered as before (DecisionMemo).
            repeat_key = (token, ref, headers.get(b"x-source"), headers.get(b"idempotency-key"))
            repeat = self._repeats.get(repeat_key)
            if repeat is not None:
                return self._repeat(repeat, record)
        trigger = self._policy.by_ref(ref)
        record.trigger = trigger.label
        source = resolve_source(request.header(b"x-source"), session, trigger)
        record.source = source
        if repeat_key is None:
            try:
                check_trigger_body(parse_object(raw))
            except ForbiddenField:
                log_audit("forbidden_field", record, request.client_ip)
                raise
        return await self._reward(request, trigger, session, source, record, repeat_key=repeat_key)

    async def dropin(self, request: Request, record: AccessRecord, origin_ok: bool) -> Answer:
        """``POST /api/v2/merchant/activities``: Nector's own body shape."""
        # A body whose size the headers tell is read after the session (_declared_length).
        declared = self._declared_length(request)
        raw = await self._json_body(request) if declared is None else b""
        session, _ = self._session(request, record, origin_ok)
        if declared is not None:
            raw = await self._declared_body(request, declared)
        body = parse_object(raw)  # the trigger is named in the body
        if "trigger_id" not in body:
            raise InvalidBody("trigger_id is required")
        trigger = self._policy.by_id(body["trigger_id"])
        record.trigger = trigger.label
        source = resolve_source(request.header(b"x-source"), session, trigger)
        record.source = source
        try:
            check_dropin_body(body, session)
        except (ForbiddenField, IdentityMismatch) as exc:
            log_audit(exc.code, record, request.client_ip)
            raise
        return await self._reward(request, trigger, session, source, record, nector=True)

    async def mint(self, request: Request) -> Answer:
        """``POST /v1/sessions``: server-to-server minting with the mint key."""
        if self._mint_key is None:
            raise NotFound()
        raw = await self._json_body(request)
        scheme, _, given = (request.header(b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("latin-1", "replace"), self._mint_key
        ):
            raise InvalidMintKey()
        body = parse_object(raw)
        max_age = self._settings.sessions.max_age_seconds
        ttl = body.pop("ttl_seconds", max_age)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= max_age:
            raise InvalidBody(f"ttl_seconds must be an integer from 1 to {max_age}")
        if "exp" in body:
            raise ForbiddenField('the client may not set "exp"; use ttl_seconds')
        now = int(time.time())
        try:
            token = mint_token(self._secrets, body, ttl_seconds=ttl, clock=lambda: now)
        except ClaimError as exc:
            raise InvalidBody(str(exc)) from exc
        data = {"token": token, "expires_at": now + ttl}
        return Answer(200, json.dumps(data).encode(), [(b"cache-control", b"no-store")])

    # --- steps --------------------------------------------------------------------------

    def _declared_length(self, request: Request) -> int | None:
        """The contract's checks before the session, the body's size (413) then its media
        type (415), when the headers tell them: the Content-Length, if there is one. The body
        is then read only once the session is known (``_declared_body``), so that the body of
        a request refused at its session (most of a flood) is never read. Without one only
        reading the body tells its size, and it is read first (``_json_body``)."""
        declared = request.declared_length(self._max_body)
        if declared:
            self._check_media_type(request)
        return declared

    async def _declared_body(self, request: Request, declared: int) -> bytes:
        """The body of ``_declared_length``'s request, which must be as long as it said: its
        media type was checked only if it said the body was not empty."""
        raw = await request.read(self._max_body)
        if len(raw) != declared:
            raise InvalidBody("the body does not match its Content-Length")
        return raw

    async def _json_body(self, request: Request) -> bytes:
        """The whole body, read now: 413 over the cap, 415 if it is not empty and not
        application/json."""
        raw = await request.body(self._max_body)
        if raw:
            self._check_media_type(request)
        return raw

    @staticmethod
    def _check_media_type(request: Request) -> None:
        """A body's media type must be application/json, parameters allowed (415)."""
        media = request.headers.get(b"content-type", b"")
        if media != b"application/json" and (
            media.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            raise UnsupportedMediaType()

    def _session(
        self, request: Request, record: AccessRecord, origin_ok: bool
    ) -> tuple[Session, str]:
        """The verified session of a bearer token or, from an allowed Origin, of the cookie;
        and the token."""
        auth = request.headers.get(b"authorization")
        try:
            if auth is not None:
                if auth.startswith(b"Bearer "):  # as clients write it: no other parsing
                    token = auth[7:].decode("latin-1").strip()
                else:
                    scheme, _, token = auth.decode("latin-1").partition(" ")
                    if scheme.lower() != "bearer":
                        # Nector's own SDKs send Basic: no session at all, not a forgery.
                        raise MissingSession(_WANTS_BEARER)
                    token = token.strip()
            else:
                cookie = request.cookie(self._cookie)
                if cookie is None:
                    raise MissingSession()
                # A cookie rides along on any site's request: only an allowed Origin may use it.
                if not origin_ok:
                    raise OriginNotAllowed("a cookie session needs an allowed Origin")
                token = cookie
            session = self._verifier.verify(token)
        except OriginNotAllowed as exc:
            record.session_refusal = exc.code
            raise
        except (MissingSession, InvalidSession) as exc:
            record.session_refusal = exc.code
            if isinstance(exc, InvalidSession) and not isinstance(exc, ExpiredSession):
                left_out = self._forgery_audits.admit(request.client_ip)
                if left_out is not None:
                    log_audit("invalid_session", record, request.client_ip, left_out)
            self._limit_client(request)
            raise
        record.customer = self._hash_customer(session.scope)
        record.key_index = session.key_index
        if self._lead_tokens is not None and session.subject_field != "lead_id":
            # Nector's recipe for proving a customer_id to a storefront key is not public.
            raise LeadSessionRequired()
        return session, token

    def _limit_client(self, request: Request) -> None:
        """A coarse per-client-IP limit on requests that fail their session checks."""
        wait = self._failures.hit(request.client_ip)
        if wait > 0:
            raise RateLimited(wait, "too many failed session checks")

    def _idempotency(
        self, header: str, session: Session, trigger: Trigger, source: str, body: bytes
    ) -> IdempotencyClaim:
        if not 1 <= len(header) <= 255 or not header.isascii() or not header.isprintable():
            raise InvalidBody("Idempotency-Key must be 1-255 printable ASCII characters")
        return idempotency_claim(
            session.scope,
            header,
            trigger_id=trigger.id,
            source=source,
            body=body,
            in_flight_seconds=self._in_flight,
            ttl_seconds=self._settings.limits.idempotency_ttl_seconds,
        )

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
        """The store's decision, then the upstream call. ``nector``: failures are written in
        Nector's envelope too (its own route)."""
        # Built only when needed: for an Idempotency-Key's fingerprint, or once admitted.
        body = None
        raw_key = request.headers.get(b"idempotency-key")
        claim = None
        if raw_key is not None:
            body = upstream_body(trigger, session)
            claim = self._idempotency(raw_key.decode("latin-1"), session, trigger, source, body)
        windows = customer_windows(trigger.id, session.scope, trigger.rates)
        decision = await self._store.admit(windows, self._budget, claim)
        outcome = decision.outcome
        record.decision = outcome
        if repeat_key is not None and outcome in _REPEATABLE:
            self._remember(repeat_key, decision, trigger, source, windows)
        if outcome is Outcome.REPLAY:
            assert decision.answer is not None
            record.replayed = True
            return Answer(decision.answer.status, decision.answer.body, [_REPLAYED])
        if outcome is Outcome.RATE_LIMITED:
            raise RateLimited(
                decision.retry_after,
                headers=quota_headers(windows, decision.windows, trigger.policy),
            )
        if outcome is Outcome.BUDGET_SPENT:
            raise UpstreamBusy(decision.retry_after)
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
        try:
            answer = await self._forward(
                body, source, lead_token, request.request_id, record, nector
            )
        except UpstreamUnreachable:
            await self._give_back(windows, claim, decision)
            raise
        if claim is not None:
            # Stored whatever it is, 502 and 504 included: the call began, so it must never
            # be sent again for this key.
            await self._store.finish(claim, StoredAnswer(answer.status, answer.body))
        answer.headers += headers
        return answer

    async def _give_back(
        self, windows: tuple[Window, ...], claim: IdempotencyClaim | None, decision: Decision
    ) -> None:
        """The call never left the machine: it spent nothing and its key is free again."""
        try:
            await self._store.release(windows, self._budget, claim, decision.ticket)
        except StorageUnavailable:
            # The reservation then ends as "lost" after its in-flight time: never paid twice.
            LOG.warning("the limit store is unavailable: a failed call's quota stays spent")

    def _remember(
        self,
        key: object,
        decision: Decision,
        trigger: Trigger,
        source: str,
        windows: tuple[Window, ...],
    ) -> None:
        """Keep a repeatable decision for as long as it holds (DecisionMemo)."""
        memo = self._repeats
        now = memo.clock()
        if decision.outcome is Outcome.REPLAY:
            until = now + REPLAY_MEMO_SECONDS
            entry = Repeat(trigger.label, source, decision.answer, None)
        elif len(decision.windows) == len(windows):
            until = now + decision.retry_after - REFUSAL_MARGIN_SECONDS
            over = OverQuota(now, decision, windows, trigger.policy)
            entry = Repeat(trigger.label, source, None, over)
        else:
            return
        memo.put(key, until, entry)

    def _repeat(self, repeat: Repeat, record: AccessRecord) -> Answer:
        """The answer to a repeat of a remembered decision, as the store would give it now.
        A refusal is returned, not raised: this is the flood's path."""
        record.trigger = repeat.trigger
        record.source = repeat.source
        if repeat.answer is not None:
            record.decision = Outcome.REPLAY
            record.replayed = True
            return Answer(repeat.answer.status, repeat.answer.body, [_REPLAYED])
        assert repeat.over_quota is not None
        record.decision = Outcome.RATE_LIMITED
        record.code = _OVER_QUOTA.code
        headers = repeat.over_quota.headers(self._repeats.clock())
        return Answer(_OVER_QUOTA.status, _OVER_QUOTA.body(record.request_id), headers)

    async def _forward(
        self,
        body: bytes,
        source: str,
        lead_token: bytes | None,
        request_id: str,
        record: AccessRecord,
        nector: bool,
    ) -> Answer:
        """The upstream's answer, or the answer to its failure (to be stored). Raises
        ``UpstreamUnreachable`` when nothing was sent."""
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
        rendered = failure.nector_body(request_id) if nector else failure.body(request_id)
        return Answer(failure.status, rendered, failure.headers)

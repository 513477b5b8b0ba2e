"""Who is calling: the verified session of a bearer token or of the cookie, and what a failed
check costs the caller.

A session comes only from a token the merchant's backend signed (``sessions``). A cookie rides
along on any site's request, so it counts only from an allowed Origin. Requests that fail their
session check are limited per client address (``FailureLimit``, in this process: a flood of
forged tokens never reaches a shared store), and a bad signature is audited at most once a
second per address (``AuditThrottle``). A request with no credential at all (a visitor) has no
check to fail, so it is not counted.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from proxy.config.settings import Rate
from proxy.errors import (
    ExpiredSession,
    InvalidSession,
    LeadSessionRequired,
    MissingSession,
    NotFromAppProxy,
    OriginNotAllowed,
    RateLimited,
    ShopNotAllowed,
)
from proxy.http.asgi import Request
from proxy.identity.claims import Session
from proxy.identity.sessions import SessionVerifier
from proxy.identity.shopify import AppProxyVerifier
from proxy.observe.logs import AccessRecord, RequestLog, customer_hasher

_WANTS_BEARER = "no session: send 'Authorization: Bearer <session token>' or the session cookie"


class FailedChecks(RateLimited):
    """The failure limit's 429: an address's, not a customer's, so a shopper is never told
    they claimed anything (``per_address``, read by http/shopper.py)."""

    message = "too many failed session checks"
    per_address = True


class Authenticator:
    """Turns a request's credentials into a verified ``Session``, or a refusal.

    ``leads_only``: a storefront-purpose Nector key proves only leads, so a ``customer_id``
    session is refused (``LeadSessionRequired``). ``app_proxy``: the verifier of requests
    Shopify forwards through the shop's App Proxy, whose session is their signed query alone.
    """

    def __init__(
        self,
        verifier: SessionVerifier,
        *,
        cookie_name: str,
        failures: FailureLimit,
        log_secret: str,
        log: RequestLog,
        leads_only: bool = False,
        app_proxy: AppProxyVerifier | None = None,
    ) -> None:
        self._verifier = verifier
        self._app_proxy = app_proxy
        self._cookie = cookie_name
        self._failures = failures
        self._forgery_audits = AuditThrottle()
        self._hash_customer = customer_hasher(log_secret)
        self._leads_only = leads_only
        self._log = log

    def session(
        self, request: Request, record: AccessRecord, cookie_ok: bool
    ) -> tuple[Session, str]:
        """The verified session of a bearer token or, when ``cookie_ok`` (an Origin listed by
        name, CorsPolicy.allows_cookie), of the cookie; and the token.

        An address past its failure limit is refused before any token is looked at, so a
        valid token and a forged one get the same 429: no oracle for guessing tokens."""
        wait = self._failures.wait(request.client_ip)
        if wait > 0:
            record.session_refusal = "rate_limited"
            raise FailedChecks(wait)
        signed = request.signed_query
        if signed is not None:
            return self._app_proxy_session(request, record, signed)
        auth = request.headers.get(b"authorization")
        cookie = None if auth is not None else request.cookie(self._cookie)
        if auth is None and cookie is None:
            # No credential at all (a visitor's public read, say): nothing failed a check, and
            # counting it would lock signed-in customers behind the same address out.
            record.session_refusal = MissingSession.code
            raise MissingSession()
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
                assert cookie is not None
                if not cookie_ok:
                    raise OriginNotAllowed("a cookie session needs an Origin listed by name")
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
                    self._log.audit("invalid_session", record, request.client_ip, left_out)
            wait = self._failures.hit(request.client_ip)
            if wait > 0:
                raise FailedChecks(wait) from exc
            raise
        return self._admit(session, record), token

    def _app_proxy_session(
        self, request: Request, record: AccessRecord, signed: list[tuple[str, str]]
    ) -> tuple[Session, str]:
        """The session of a request Shopify forwarded; the "token" that names it in
        remembered decisions is the customer's scope (the query changes every time)."""
        if self._app_proxy is None:
            raise MissingSession("this proxy takes no Shopify App Proxy requests")
        try:
            session = self._app_proxy.verify_pairs(signed)
        except (MissingSession, InvalidSession, ShopNotAllowed) as exc:
            record.session_refusal = exc.code
            # Only a forgery counts: every shopper arrives from Shopify's own addresses, and a
            # signed-out one (missing), a skewed clock (expired), another shop of the same app
            # or a query Shopify signed with a repeated parameter must not lock them all out.
            if isinstance(exc, NotFromAppProxy):
                left_out = self._forgery_audits.admit(request.client_ip)
                if left_out is not None:
                    self._log.audit("invalid_session", record, request.client_ip, left_out)
                wait = self._failures.hit(request.client_ip)
                if wait > 0:
                    raise FailedChecks(wait) from exc
            raise
        return self._admit(session, record), "app-proxy:" + session.scope

    def _admit(self, session: Session, record: AccessRecord) -> Session:
        record.customer = self._hash_customer(session.scope)
        record.key_index = session.key_index
        if self._leads_only and session.subject_field != "lead_id":
            # Nector's recipe for proving a customer_id to a storefront key is not public.
            raise LeadSessionRequired()
        return session


class FailureLimit:
    """A per-address limit on failed session checks, kept in the process.

    An exact moving window like the stores' (the times of the counted failures, at most
    ``limit`` of them, oldest first), without their generality: a flood of forged tokens costs
    a dict lookup and a deque append each, and never reaches a shared store. Bounded: at
    ``max_addresses`` it forgets addresses whose windows have emptied (at most once a second);
    if none have, a new address is not counted.
    """

    def __init__(
        self, rate: Rate, *, max_addresses: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._limit = rate.limit
        self._seconds = rate.seconds
        self._max = max_addresses
        self._clock = clock
        self._times: dict[str, collections.deque[float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, address: str) -> float:
        """The seconds until ``address`` may fail once more (0.0 if it may now); counts
        nothing."""
        times = self._times.get(address)
        if times is None or len(times) < self._limit:
            return 0.0
        start = self._clock() - self._seconds
        return max(0.0, times[-self._limit] - start)

    def hit(self, address: str) -> float:
        """Count one failure from ``address``: 0.0 if it is within the limit, else the seconds
        until one more would be (the failure is then not counted)."""
        now = self._clock()
        times = self._times.get(address)
        if times is None:
            if len(self._times) >= self._max and not self._sweep(now):
                return 0.0
            times = self._times[address] = collections.deque()
        start = now - self._seconds
        while times and times[0] <= start:
            times.popleft()
        if len(times) >= self._limit:
            return times[0] - start
        times.append(now)
        return 0.0

    def _sweep(self, now: float) -> bool:
        """Drop the addresses with nothing left in their window; True if any room was made."""
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            start = now - self._seconds
            for address in [a for a, t in self._times.items() if not t or t[-1] <= start]:
                del self._times[address]
        return len(self._times) < self._max


class AuditThrottle:
    """At most one audit line per client address every ``seconds`` for one kind of event.

    A flood of forged tokens from one address would otherwise write an audit line beside the
    access line of every request. Each refused request still has its access line (with its
    ``session_refusal``); the audit line that is written says how many were left out since the
    last one. Bounded: at ``max_addresses`` those not seen for ``seconds`` are forgotten, and
    if none can be, a new address's lines are not throttled.
    """

    def __init__(
        self,
        *,
        seconds: float = 1.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._max = max_addresses
        self._clock = clock
        self._written: dict[str, float] = {}  # address -> when its last line was written
        self._left_out: dict[str, int] = {}  # address -> lines left out since

    def admit(self, address: str) -> int | None:
        """None to leave this line out; else write it, with this many left out before it."""
        now = self._clock()
        written = self._written.get(address)
        if written is None:
            if len(self._written) >= self._max:
                cutoff = now - self._seconds
                for stale in [a for a, at in self._written.items() if at <= cutoff]:
                    del self._written[stale]
                    self._left_out.pop(stale, None)
                if len(self._written) >= self._max:
                    return 0
        elif now - written < self._seconds:
            self._left_out[address] = self._left_out.get(address, 0) + 1
            return None
        self._written[address] = now
        return self._left_out.pop(address, 0)
